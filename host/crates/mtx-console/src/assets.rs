//! The console's page, embedded in the binary: no build step, no CDN, nothing fetched at
//! run time. The stylesheet and the script are inlined into the HTML so that a console
//! with a token serves everything from the one URL that carries it. Assets are plain
//! files under `assets/`; this module only stitches them together.

const INDEX_HTML: &str = include_str!("../assets/index.html");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const APP_JS: &str = include_str!("../assets/app.js");

/// The page as served.
pub fn page() -> String {
    INDEX_HTML.replace("/*MTX_STYLE*/", STYLE_CSS).replace("/*MTX_SCRIPT*/", APP_JS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_inlines_its_style_and_script() {
        let page = super::page();
        assert!(!page.contains("/*MTX_STYLE*/") && !page.contains("/*MTX_SCRIPT*/"));
        assert!(page.contains("mtx operator console"));
        assert!(page.contains("function route"), "the script is inlined");
    }
}
