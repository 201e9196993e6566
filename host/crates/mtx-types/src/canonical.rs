//! Canonical JSON written straight from a `Serialize` value: object keys sorted, no
//! insignificant whitespace.
//!
//! The definition is [`canonical_json_value`]: the value converted to a
//! [`serde_json::Value`], then written with each object's keys in byte order and every
//! leaf (key, string, number, bool, null) as `serde_json` writes it. Every recorded hash
//! was computed over that form, so this writer must produce the same bytes. It skips the
//! tree: each object's members are written into one buffer, then copied out in key order.
//! A shape it does not take the way the conversion does (a map key that is not a string
//! or an integer, a key seen twice, a 128-bit integer, a raw JSON value) makes it give up,
//! and [`canonical_json`] falls back to the conversion.

use serde::ser::{self, Serialize};
use serde_json::Value;

/// Canonical JSON bytes of a value. Used wherever a record is hashed (snapshot hashes,
/// recorded plugin inputs, progress entries).
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    match value.serialize(Writer { out: &mut out }) {
        Ok(()) => out,
        Err(GiveUp) => {
            let value = serde_json::to_value(value).expect("serialising an in-memory record cannot fail");
            canonical_json_value(&value)
        }
    }
}

/// [`canonical_json`] of a value that is already a JSON tree (no second conversion).
pub fn canonical_json_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_leaf(key, out);
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        other => write_leaf(other, out),
    }
}

/// A key, string or number, written by serde_json itself (the escaping and number format
/// of `to_string`) straight into `out`.
fn write_leaf<T: Serialize + ?Sized>(leaf: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(out, leaf).expect("JSON leaves serialise into memory");
}

/// The direct writer met a shape it leaves to the conversion.
#[derive(Debug)]
struct GiveUp;

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("left to the JSON tree conversion")
    }
}

impl std::error::Error for GiveUp {}

impl ser::Error for GiveUp {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        GiveUp
    }
}

/// Writes one value at the end of `out`.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// The name serde_json gives the struct a raw JSON value serialises as.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl<'a> Writer<'a> {
    /// A number or other scalar as the conversion stores it (`Value::from`), so floats,
    /// `f32` widening and NaN (null) come out as they would from the tree.
    fn scalar(self, value: impl Into<Value>) -> Result<(), GiveUp> {
        write_leaf(&value.into(), self.out);
        Ok(())
    }

    /// `{"variant":` opened for an externally tagged enum variant with data.
    fn open_variant(out: &mut Vec<u8>, variant: &str) {
        out.push(b'{');
        write_leaf(variant, out);
        out.push(b':');
    }
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = GiveUp;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), GiveUp> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_i128(self, _v: i128) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u128(self, _v: u128) -> Result<(), GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f32(self, v: f32) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), GiveUp> {
        self.scalar(v)
    }
    fn serialize_char(self, v: char) -> Result<(), GiveUp> {
        let mut buf = [0; 4];
        write_leaf(v.encode_utf8(&mut buf) as &str, self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), GiveUp> {
        write_leaf(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), GiveUp> {
        // The tree holds bytes as an array of numbers.
        self.out.push(b'[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_leaf(b, self.out);
        }
        self.out.push(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<(), GiveUp> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), GiveUp> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), GiveUp> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), GiveUp> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), GiveUp> {
        Writer::open_variant(self.out, variant);
        value.serialize(Writer { out: &mut *self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>, GiveUp> {
        self.out.push(b'[');
        Ok(Seq { out: self.out, first: true, variant: false })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, GiveUp> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq<'a>, GiveUp> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Seq<'a>, GiveUp> {
        Writer::open_variant(self.out, variant);
        self.out.push(b'[');
        Ok(Seq { out: self.out, first: true, variant: true })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, GiveUp> {
        Ok(Object::new(self.out, len.unwrap_or(8), false))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Object<'a>, GiveUp> {
        if name == RAW_VALUE_TOKEN {
            return Err(GiveUp);
        }
        Ok(Object::new(self.out, len, false))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, GiveUp> {
        Writer::open_variant(self.out, variant);
        Ok(Object::new(self.out, len, true))
    }
}

/// An array, written in place.
struct Seq<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// Inside `{"variant":` (a tuple variant), closed by `end`.
    variant: bool,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        value.serialize(Writer { out: &mut *self.out })
    }

    fn close(self) -> Result<(), GiveUp> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// The four array-like serde traits, each an element at a time.
macro_rules! array_like {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = GiveUp;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
                self.element(value)
            }
            fn end(self) -> Result<(), GiveUp> {
                self.close()
            }
        }
    )*};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// An object: members are written into `members` as they come, then copied to `out` in
/// key order by `end`.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    members: Vec<u8>,
    /// Each member's key and where its value lies in `members`.
    index: Vec<(std::borrow::Cow<'static, str>, std::ops::Range<usize>)>,
    /// The key `serialize_key` gave, waiting for its value.
    pending: Option<String>,
    /// Inside `{"variant":` (a struct variant), closed by `end`.
    variant: bool,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, len: usize, variant: bool) -> Self {
        Object {
            out,
            members: Vec::with_capacity(len * 24),
            index: Vec::with_capacity(len),
            pending: None,
            variant,
        }
    }

    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: std::borrow::Cow<'static, str>,
        value: &T,
    ) -> Result<(), GiveUp> {
        let start = self.members.len();
        value.serialize(Writer { out: &mut self.members })?;
        self.index.push((key, start..self.members.len()));
        Ok(())
    }

    fn close(mut self) -> Result<(), GiveUp> {
        self.index.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // A key given twice is one member in the tree (the last value wins).
        if self.index.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(GiveUp);
        }
        self.out.reserve(self.members.len() + self.index.iter().map(|(k, _)| k.len() + 4).sum::<usize>() + 2);
        self.out.push(b'{');
        for (i, (key, range)) in self.index.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_leaf(key.as_ref(), self.out);
            self.out.push(b':');
            self.out.extend_from_slice(&self.members[range.clone()]);
        }
        self.out.push(b'}');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = GiveUp;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), GiveUp> {
        self.pending = Some(key.serialize(KeyWriter)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), GiveUp> {
        let key = self.pending.take().ok_or(GiveUp)?;
        self.member(key.into(), value)
    }
    fn end(self) -> Result<(), GiveUp> {
        self.close()
    }
}

/// Structs and struct variants: fields named by static keys.
macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = GiveUp;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), GiveUp> {
                self.member(key.into(), value)
            }
            fn end(self) -> Result<(), GiveUp> {
                self.close()
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

/// A map key as the tree stores it: a string, or an integer's decimal digits. Any other
/// key is left to the conversion (which takes or refuses it as it always did).
struct KeyWriter;

impl KeyWriter {
    fn digits(v: impl std::fmt::Display) -> Result<String, GiveUp> {
        Ok(v.to_string())
    }
}

impl ser::Serializer for KeyWriter {
    type Ok = String;
    type Error = GiveUp;
    type SerializeSeq = ser::Impossible<String, GiveUp>;
    type SerializeTuple = ser::Impossible<String, GiveUp>;
    type SerializeTupleStruct = ser::Impossible<String, GiveUp>;
    type SerializeTupleVariant = ser::Impossible<String, GiveUp>;
    type SerializeMap = ser::Impossible<String, GiveUp>;
    type SerializeStruct = ser::Impossible<String, GiveUp>;
    type SerializeStructVariant = ser::Impossible<String, GiveUp>;

    fn serialize_str(self, v: &str) -> Result<String, GiveUp> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> Result<String, GiveUp> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, GiveUp> {
        Self::digits(v)
    }
    fn serialize_i16(self, v: i16) -> Result<String, GiveUp> {
        Self::digits(v)
    }
    fn serialize_i32(self, v: i32) -> Result<String, GiveUp> {
        Self::digits(v)
    }
    fn serialize_i64(self, v: i64) -> Result<String, GiveUp> {
        Self::digits(v)
    }
    fn serialize_u8(self, v: u8) -> Result<String, GiveUp> {
        Self::digits(v)
    }
    fn serialize_u16(self, v: u16) -> Result<String, GiveUp> {
        Self::digits(v)
    }
    fn serialize_u32(self, v: u32) -> Result<String, GiveUp> {
        Self::digits(v)
    }
    fn serialize_u64(self, v: u64) -> Result<String, GiveUp> {
        Self::digits(v)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, GiveUp> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, GiveUp> {
        value.serialize(self)
    }
    fn serialize_bool(self, _v: bool) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_i128(self, _v: i128) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_u128(self, _v: u128) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f32(self, _v: f32) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_f64(self, _v: f64) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_none(self) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_unit(self) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self::SerializeStruct, GiveUp> {
        Err(GiveUp)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, GiveUp> {
        Err(GiveUp)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::{Value, canonical_json, canonical_json_value};

    /// The definition: the tree conversion, then sorted keys.
    fn through_tree<T: Serialize>(value: &T) -> Vec<u8> {
        canonical_json_value(&serde_json::to_value(value).unwrap())
    }

    #[derive(Serialize)]
    enum Shape {
        Unit,
        Newtype(u8),
        Tuple(i32, String),
        Struct { zeta: f32, alpha: Option<bool> },
    }

    #[derive(Serialize)]
    struct Record {
        z_last: Vec<Shape>,
        a_first: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        floats: Vec<f64>,
        small: f32,
        by_number: BTreeMap<u64, &'static str>,
        by_shape: BTreeMap<String, (char, ())>,
        #[serde(with = "bytes_as_bytes")]
        raw: Vec<u8>,
        unit: (),
        nested: serde_json::Value,
    }

    mod bytes_as_bytes {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    #[test]
    fn the_direct_writer_matches_the_tree_for_every_shape_it_takes() {
        let record = Record {
            z_last: vec![
                Shape::Unit,
                Shape::Newtype(7),
                Shape::Tuple(-3, "t\"\n".into()),
                Shape::Struct { zeta: 0.1, alpha: None },
            ],
            a_first: Some("caf\u{e9} \u{1F600} \\ \u{1}".into()),
            skipped: None,
            floats: vec![1.5, -0.0, 1e300, f64::NAN, f64::INFINITY, 3.0, 0.1],
            small: 1.1,
            by_number: BTreeMap::from([(10, "ten"), (9, "nine"), (u64::MAX, "max")]),
            by_shape: BTreeMap::from([("b".into(), ('\u{e9}', ())), ("a".into(), ('"', ()))]),
            raw: vec![0, 255, 16],
            unit: (),
            nested: serde_json::json!({"y": [1, {"b": null, "a": -9}], "x": 12345678901234567890u64, "": {}}),
        };
        let direct = canonical_json(&record);
        assert_eq!(String::from_utf8(direct).unwrap(), String::from_utf8(through_tree(&record)).unwrap());
    }

    #[test]
    fn a_key_given_twice_or_a_key_the_writer_does_not_take_falls_back_to_the_tree() {
        #[derive(Serialize)]
        struct Inner {
            same: u8,
            other: u8,
        }
        #[derive(Serialize)]
        struct Outer {
            same: u8,
            #[serde(flatten)]
            inner: Inner,
        }
        let twice = Outer { same: 1, inner: Inner { same: 2, other: 3 } };
        assert_eq!(canonical_json(&twice), through_tree(&twice));
        assert_eq!(String::from_utf8(canonical_json(&twice)).unwrap(), r#"{"other":3,"same":2}"#);

        let bool_keys = BTreeMap::from([(true, 1), (false, 0)]);
        assert_eq!(canonical_json(&bool_keys), through_tree(&bool_keys));
        let wide = vec![u128::from(u64::MAX), 5];
        assert_eq!(canonical_json(&wide), through_tree(&wide));
    }

    #[test]
    fn the_direct_writer_matches_the_tree_on_generated_json() {
        // A deterministic walk over many small documents: keys that sort differently as
        // bytes and as characters, escapes, every number kind, nesting.
        let keys = ["b", "a", "B", "\u{e9}", "aa", "a\u{0}", "\u{1F600}", "", "10", "9"];
        let leaves = [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(-1),
            serde_json::json!(u64::MAX),
            serde_json::json!(2.5e-8),
            serde_json::json!("s\u{7f}\u{2028}"),
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        fn build(depth: u32, next: &mut dyn FnMut(usize) -> usize, keys: &[&str], leaves: &[Value]) -> Value {
            match if depth == 0 { 0 } else { next(3) } {
                0 => leaves[next(leaves.len())].clone(),
                1 => Value::Array((0..next(4)).map(|_| build(depth - 1, next, keys, leaves)).collect()),
                _ => Value::Object(
                    (0..next(5))
                        .map(|_| (keys[next(keys.len())].to_owned(), build(depth - 1, next, keys, leaves)))
                        .collect(),
                ),
            }
        }
        for _ in 0..500 {
            let doc = build(4, &mut next, &keys, &leaves);
            assert_eq!(canonical_json(&doc), canonical_json_value(&doc), "{doc}");
        }
    }
}
