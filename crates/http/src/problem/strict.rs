//! Reading request bodies strictly, and saying what was wrong without naming
//! a Rust type: a struct is read as a JSON object only (at every depth), and
//! serde's messages are rewritten into the JSON words a client understands.

use super::*;

/// The detail of a 422 for a body that is an array, a string, a number or `null`
/// where an object is expected.
pub(super) const NOT_AN_OBJECT: &str = "The body must be a JSON object.";

/// What [`ObjectBody`] says it expected; serde puts it in its error message.
pub(super) const EXPECTED_OBJECT_BODY: &str = "expected a JSON object body";

/// Phrases serde's derived impls use to say what they expected, each followed by a
/// Rust type name (`struct LoginRequest`, `enum Role`), and the JSON words that
/// replace phrase and name. Longer phrases first.
pub(super) const TYPE_PHRASES: &[(&[&str], &str)] = &[
    (
        &["any", "variant", "of", "untagged", "enum"],
        "any allowed form",
    ),
    (&["internally", "tagged", "enum"], "an object"),
    (&["adjacently", "tagged", "enum"], "an object"),
    (&["untagged", "enum"], "an allowed value"),
    (&["struct", "variant"], "an object"),
    (&["tuple", "variant"], "an array"),
    (&["tuple", "struct"], "an array"),
    (&["unit", "struct"], "null"),
    (&["struct"], "an object"),
    (&["enum"], "an allowed value"),
];

/// Rewrites a serde error message so that it names no Rust type: `invalid type:
/// string "x", expected struct Address` becomes `... expected an object`, and
/// `struct Foo with 2 elements` loses its count too. Field paths, positions and
/// everything else are kept.
pub(super) fn neutral(message: &str) -> String {
    let words: Vec<&str> = message.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    'words: while i < words.len() {
        for (phrase, replacement) in TYPE_PHRASES {
            let name_at = i + phrase.len();
            if words.get(i..name_at) != Some(*phrase) {
                continue;
            }
            let Some(mut tail) = words.get(name_at).and_then(|w| type_name_tail(w)) else {
                continue;
            };
            let mut next = name_at + 1;
            // `struct Foo with 3 elements`, from a struct sent as an array.
            if let [with, count, elements, ..] = words.get(next..).unwrap_or_default()
                && *with == "with"
                && count.parse::<usize>().is_ok()
                && elements.starts_with("element")
            {
                tail = elements
                    .trim_start_matches("elements")
                    .trim_start_matches("element");
                next += 3;
            }
            out.push(format!("{replacement}{tail}"));
            i = next;
            continue 'words;
        }
        out.push(primitive(words[i]));
        i += 1;
    }
    shorten(&without_values(&uuid_failure(&out.join(" "))))
}

/// The message without the values serde quotes from the input (`integer
/// `4242…``, `string "…"`): a card number or a password sent with the wrong
/// type must not come back in an error, nor reach a log through one. The
/// kind of value stays (`invalid type: integer, expected a string`).
pub(super) fn without_values(message: &str) -> String {
    const KINDS: [&str; 5] = [
        "integer ",
        "floating point ",
        "boolean ",
        "character ",
        "string ",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, kind)) = KINDS
        .iter()
        .filter_map(|k| rest.find(k).map(|at| (at, *k)))
        .min_by_key(|(at, _)| *at)
    {
        let after = &rest[at + kind.len()..];
        let quoted = match after.chars().next() {
            Some('`') => after[1..].find('`').map(|end| end + 2),
            Some('"') => closing_quote(after).map(|end| end + 1),
            _ => None,
        };
        out.push_str(&rest[..at + kind.len() - 1]);
        rest = match quoted {
            Some(len) => &after[len..],
            None => &rest[at + kind.len() - 1..],
        };
        if quoted.is_none() {
            // Not a quoted value: keep the space and go on after it.
            out.push(' ');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The byte index of the `"` closing a Rust-escaped string that `text`
/// opens with one.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Some(i),
            _ => {}
        }
    }
    None
}

/// A Rust primitive type name (`i64`, `u32,`) as the JSON it asks for.
pub(super) fn primitive(word: &str) -> String {
    let name = word.trim_end_matches([',', ';', '.', ')']);
    let tail = &word[name.len()..];
    let plain = match name {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "an integer in range",
        "f32" | "f64" => "a number",
        "char" => "one character",
        _ => return word.to_owned(),
    };
    format!("{plain}{tail}")
}

/// `UUID parsing failed: invalid character: found `n` at 0 at line 1 column 9`
/// (the uuid crate's words) as `not a UUID at line 1 column 9`.
pub(super) fn uuid_failure(message: &str) -> String {
    let Some(start) = message.find("UUID parsing failed") else {
        return message.to_owned();
    };
    let rest = &message[start..];
    let end = rest.find(" at line ").unwrap_or(rest.len());
    format!("{}not a UUID{}", &message[..start], &rest[end..])
}

/// The most of a client's own input an error detail repeats.
pub(super) const MAX_DETAIL: usize = 300;

/// Details quote field names and values the client sent: bounded, so a huge
/// key is not sent back whole.
pub(super) fn shorten(text: &str) -> String {
    if text.len() <= MAX_DETAIL {
        return text.to_owned();
    }
    let cut = (0..=MAX_DETAIL)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// If `word` is a Rust type name (`Foo`, `Foo::Bar`, `Foo<T>`), possibly followed by
/// punctuation, returns that punctuation.
pub(super) fn type_name_tail(word: &str) -> Option<&str> {
    let name = word.trim_end_matches([',', ';', '.', ')']);
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_');
    let rust_chars = name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '<' | '>'));
    (starts_well && rust_chars).then_some(&word[name.len()..])
}

/// A request body that must be a JSON object when `T` is a struct.
///
/// serde_json lets a struct be written as an array of its field values
/// (`["a@b.co", "pw"]`), and refuses other values with a message naming the Rust
/// type. Here a struct asks for a map instead, so anything but an object is a
/// data error saying [`EXPECTED_OBJECT_BODY`]. Types that ask for something else
/// (`Vec<_>`, `serde_json::Value`) are deserialised as they always are. Only the
/// top level is affected.
pub(super) struct ObjectBody<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(Strict {
            inner: deserializer,
            top: true,
        })
        .map(Self)
    }
}

/// A deserializer that passes everything through, except that a struct is
/// read as a map only, at every depth: serde would otherwise take
/// `"price": [1, "EUR"]` for `{"amount": 1, "currency": "EUR"}`.
pub(super) struct Strict<D> {
    inner: D,
    /// The body itself, rather than a value inside it (for the message).
    top: bool,
}

/// A struct's visitor that only accepts a map.
pub(super) struct ObjectVisitor<V> {
    inner: V,
    top: bool,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for ObjectVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.top {
            f.write_str(EXPECTED_OBJECT_BODY.trim_start_matches("expected "))
        } else {
            f.write_str("an object")
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(StrictMap(map))
    }
}

/// Any other visitor, whose nested values are read strictly too.
pub(super) struct StrictVisitor<V>(V);

macro_rules! forward_visits {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: serde::de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StrictVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visits! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(Strict {
            inner: d,
            top: false,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(Strict {
            inner: d,
            top: false,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(StrictSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(StrictMap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(data)
    }
}

/// The elements of an array, each read strictly.
pub(super) struct StrictSeq<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for StrictSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// The values of an object, each read strictly (keys as they are).
pub(super) struct StrictMap<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for StrictMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(StrictSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

pub(super) struct StrictSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for StrictSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict {
            inner: d,
            top: false,
        })
    }
}

macro_rules! forward_to_inner {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

macro_rules! forward_strictly {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method($($arg,)* StrictVisitor(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(ObjectVisitor {
            inner: visitor,
            top: self.top,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }

    forward_strictly! {
        deserialize_any();
        deserialize_option();
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
    }

    forward_to_inner! {
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }
}
