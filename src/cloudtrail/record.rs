//! Raw bytes of one record → a lazily parsed view that rules and alerts read fields from.
//!
//! Building a full `serde_json::Value` for every record would cost more than inflating it.
//! Instead the reader's one pass lays out where the members of the record and of its nested
//! objects lie ([`object::scan`]), and a field such as `userIdentity.type` is found by walking
//! those members along its path. Rules touch a handful of fields per record, so every byte is
//! scanned once and nothing is allocated for a field no rule reads. A record the scanner left
//! to `serde_json` keeps its top-level members, and its nested objects are parsed as read.
//!
//! Reading is lenient, as AWS payloads require: unknown fields are ignored, absent and `null`
//! fields read as absent (`None`) for alert rendering, and only eventVersion, eventTime,
//! eventSource, eventName, awsRegion and eventID are guaranteed by CloudTrail.
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::fmt;

use rsigma_eval::event::{Event, EventValue, JsonEvent};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::object::{self, Layout, Member};

/// One parsed JSON object: its keys and the raw JSON of each value.
#[derive(Debug)]
enum Fields<'a> {
    /// Laid out by the one-pass scanner ([`object::scan`]): the members of the object and of
    /// the objects nested in it, with spans into `text`.
    Scanned {
        text: &'a str,
        layout: Cow<'a, Layout>,
    },
    /// Parsed by `serde_json`: what the scanner leaves to it (escaped keys, deep nesting,
    /// invalid JSON, which then fails with `serde_json`'s error).
    Parsed(Vec<(Cow<'a, str>, &'a str)>),
}

/// A value in a record: its raw JSON and, when it is an object whose members the scanner laid
/// out, the member of the record's [`Fields::Scanned`] layout that holds it.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    raw: &'a str,
    holder: Option<Member>,
}

impl<'a> Found<'a> {
    /// The value's JSON text, as the record holds it.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The value alone, its place in another object's layout forgotten.
    fn detached(self) -> Self {
        Found {
            raw: self.raw,
            holder: None,
        }
    }
}

impl<'a> Fields<'a> {
    fn parse(json: &'a str) -> serde_json::Result<Self> {
        let start = json.len() - json.trim_start_matches(is_json_space).len();
        let mut layout = Layout::default();
        if let object::Scan::Complete(end) = object::scan(json.as_bytes(), start, &mut layout)
            && json[end..].trim_start_matches(is_json_space).is_empty()
        {
            return Ok(Fields::Scanned {
                text: &json[start..end],
                layout: Cow::Owned(layout),
            });
        }
        let parsed: Parsed<'a> = serde_json::from_str(json)?;
        Ok(Fields::Parsed(parsed.0))
    }

    /// The member `key` of the object `holder` holds (the outermost object when `None`); of
    /// its last occurrence when the object repeats it, as serde_json (and so the engine's view
    /// of the whole record) reads it, so that every path to a field sees the same value.
    fn get(&self, holder: Option<&Member>, key: &str) -> Option<Found<'a>> {
        match self {
            Fields::Scanned { text, layout } => {
                let span = |(a, b): (u32, u32)| &text[a as usize..b as usize];
                // The key's span holds its quotes. Compared as bytes: a span the scanner laid
                // out is whole characters, which slicing the text would check again. The last
                // byte first: it tells most keys of one length apart (awsRegion, userAgent and
                // requestID from eventName) without a call to memcmp, 1% of the instructions
                // with SigmaHQ's rules.
                let last = key.as_bytes().last().copied().unwrap_or(b'"');
                let is_key = |m: &&Member| {
                    (m.key.1 - m.key.0) as usize == key.len() + 2
                        && text.as_bytes()[m.key.1 as usize - 2] == last
                        && text.as_bytes()[m.key.0 as usize + 1..m.key.1 as usize - 1]
                            == *key.as_bytes()
                };
                let found = match holder {
                    None => layout.top.iter().rev().find(is_key),
                    Some(holder) => object::members_of(layout, holder).find(is_key),
                }?;
                let raw = span(found.value);
                Some(Found {
                    raw,
                    holder: raw.starts_with('{').then_some(*found),
                })
            }
            // Only a scanned object has members laid out to be holders.
            Fields::Parsed(fields) => fields
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, raw)| Found { raw, holder: None }),
        }
    }
}

fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\n' | '\r' | '\t')
}

/// The members of an object as `serde_json` reads them.
struct Parsed<'a>(Vec<(Cow<'a, str>, &'a str)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Parsed<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = Parsed<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(24));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key.0, value.get()));
                }
                Ok(Parsed(fields))
            }
        }

        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

/// A map key, borrowed from the input unless it contains escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A CloudTrail record, parsed lazily from its raw JSON.
pub struct Record<'a> {
    fields: Fields<'a>,
    raw: &'a str,
    /// The whole record as a `Value`, built only for keyword rules and array paths.
    full: OnceCell<Value>,
    /// Nested objects the scanner did not lay out (in a record it left to `serde_json`),
    /// parsed on first use, by the address of their raw JSON: each is parsed once per record.
    nested: RefCell<Vec<(usize, Fields<'a>)>>,
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record").field("raw", &self.raw).finish()
    }
}

impl<'a> Record<'a> {
    /// Parses a record. Fails when the bytes are not a JSON object.
    pub fn parse(raw: &'a [u8]) -> serde_json::Result<Self> {
        let raw = utf8(raw)?;
        Ok(Record::new(raw, Fields::parse(raw)?))
    }

    /// The record whose members the reader laid out while splitting the file (see
    /// [`super::RawRecord::members`]): nothing is parsed again.
    pub fn from_members(raw: &'a [u8], layout: &'a Layout) -> serde_json::Result<Self> {
        let text = utf8(raw)?;
        let layout = Cow::Borrowed(layout);
        Ok(Record::new(text, Fields::Scanned { text, layout }))
    }

    fn new(raw: &'a str, fields: Fields<'a>) -> Self {
        Record {
            fields,
            raw,
            full: OnceCell::new(),
            nested: RefCell::new(Vec::new()),
        }
    }

    /// The member `key` of the top-level object.
    fn top(&self, key: &str) -> Option<Found<'a>> {
        self.fields.get(None, key)
    }

    /// The member `key` of `object`, a JSON object of this record: found among the members
    /// the scanner laid out, or else by parsing the object (once, whatever the number of keys
    /// asked of it).
    fn member(&self, object: Found<'a>, key: &str) -> Option<Found<'a>> {
        if let Some(holder) = &object.holder {
            return self.fields.get(Some(holder), key);
        }
        let at = object.raw.as_ptr() as usize;
        let mut nested = self.nested.borrow_mut();
        if let Some((_, fields)) = nested.iter().find(|(p, _)| *p == at) {
            return fields.get(None, key).map(Found::detached);
        }
        let fields = Fields::parse(object.raw).ok()?;
        let found = fields.get(None, key).map(Found::detached);
        nested.push((at, fields));
        found
    }

    /// The member `key` of the record (`object` `None`) or of one of its objects; `None` when
    /// absent or when `object` is not an object. A step of a path read key by key, for
    /// readers of several paths that share their first steps.
    pub fn child(&self, object: Option<Found<'a>>, key: &str) -> Option<Found<'a>> {
        match object {
            None => self.top(key),
            Some(object) if object.raw.starts_with('{') => self.member(object, key),
            Some(_) => None,
        }
    }

    /// The raw JSON at a dot-separated path of object keys, if every step is an object.
    pub fn raw_at(&self, path: &str) -> Option<&'a str> {
        if let Some(v) = self.top(path) {
            return Some(v.raw);
        }
        let (mut value, mut rest) = (None, path);
        while let Some((step, after)) = split_step(rest) {
            value = Some(self.child(value, step)?);
            rest = after;
        }
        self.child(value, rest).map(|v| v.raw)
    }

    /// A string field at a dot path; absent, `null` and non-string values read as `None`.
    pub fn str_at(&self, path: &str) -> Option<Cow<'a, str>> {
        match scalar(self.raw_at(path)?)? {
            EventValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value at a dot path, parsed on its own (objects on the path are walked lazily, so
    /// the rest of the record is never built).
    pub fn value_at(&self, path: &str) -> Option<Value> {
        serde_json::from_str(self.raw_at(path)?).ok()
    }

    /// Whether a field is present with a non-null value.
    pub fn has(&self, path: &str) -> bool {
        self.raw_at(path).is_some_and(|v| v != "null")
    }

    /// The record as a `serde_json::Value` (parsed once, on first use).
    pub fn value(&self) -> &Value {
        self.full
            .get_or_init(|| serde_json::from_str(self.raw).unwrap_or(Value::Null))
    }

    /// Resolves a path the lazy walk cannot (arrays, escaped or indexed segments) with the
    /// engine's own JSON semantics, on the fully parsed record.
    fn get_field_slow(&self, path: &str) -> Option<EventValue<'_>> {
        JsonEvent::borrow(self.value())
            .get_field(path)
            .map(into_owned)
    }
}

/// The record's bytes as text, or `serde_json`'s kind of error saying where they are not UTF-8.
fn utf8(raw: &[u8]) -> serde_json::Result<&str> {
    std::str::from_utf8(raw).map_err(|e| {
        <serde_json::Error as de::Error>::custom(format_args!(
            "invalid UTF-8 at byte {}",
            e.valid_up_to()
        ))
    })
}

/// Converts a scalar's raw JSON into an [`EventValue`] without allocating for plain strings.
/// Objects and arrays return `None`: the caller decides how to handle them.
fn scalar(text: &str) -> Option<EventValue<'_>> {
    match text.as_bytes().first()? {
        b'"' => {
            let inner = &text[1..text.len() - 1];
            if memchr::memchr(b'\\', inner.as_bytes()).is_some() {
                serde_json::from_str::<String>(text)
                    .ok()
                    .map(|s| EventValue::Str(Cow::Owned(s)))
            } else {
                Some(EventValue::Str(Cow::Borrowed(inner)))
            }
        }
        b't' => Some(EventValue::Bool(true)),
        b'f' => Some(EventValue::Bool(false)),
        b'n' => Some(EventValue::Null),
        b'{' | b'[' => None,
        _ => match text.parse::<i64>() {
            Ok(n) => Some(EventValue::Int(n)),
            Err(_) => text.parse::<f64>().ok().map(EventValue::Float),
        },
    }
}

/// A dot path's first step and the rest, split at its first `.`.
fn split_step(path: &str) -> Option<(&str, &str)> {
    let dot = memchr::memchr(b'.', path.as_bytes())?;
    Some((&path[..dot], &path[dot + 1..]))
}

/// Detaches an [`EventValue`] from whatever it borrowed.
fn into_owned(value: EventValue<'_>) -> EventValue<'static> {
    match value {
        EventValue::Str(s) => EventValue::Str(Cow::Owned(s.into_owned())),
        EventValue::Int(n) => EventValue::Int(n),
        EventValue::Float(f) => EventValue::Float(f),
        EventValue::Bool(b) => EventValue::Bool(b),
        EventValue::Null => EventValue::Null,
        EventValue::Array(items) => EventValue::Array(items.into_iter().map(into_owned).collect()),
        EventValue::Map(entries) => EventValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), into_owned(v)))
                .collect(),
        ),
    }
}

// The record does not name its top-level keys (`top_level_keys`): the engine's candidate
// index then probes each field its rules index, a few dozen lookups, rather than hashing
// every one of the record's twenty-odd keys to find the fields under it. Fewer instructions
// per record, measured with both the builtin and SigmaHQ's rules.
impl Event for Record<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        // Paths are short: memchr's byte search, not str's char patterns, which decode UTF-8.
        if memchr::memchr2(b'[', b'\\', path.as_bytes()).is_some() {
            return self.get_field_slow(path);
        }
        if let Some(v) = self.top(path) {
            return scalar(v.raw).or_else(|| self.get_field_slow(path));
        }
        let (root, mut rest) = split_step(path)?;
        let mut value = self.top(root)?;
        loop {
            if !value.raw.starts_with('{') {
                // An array on the path means any-member semantics; null or a scalar means the
                // field is absent. The engine's JSON walker handles both.
                return if value.raw.starts_with('[') {
                    self.get_field_slow(path)
                } else {
                    None
                };
            }
            // Flat-key precedence at every level, as the engine's JSON events do.
            if let Some(v) = self.member(value, rest) {
                return scalar(v.raw).or_else(|| self.get_field_slow(path));
            }
            let (head, tail) = split_step(rest)?;
            value = self.member(value, head)?;
            rest = tail;
        }
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        JsonEvent::borrow(self.value()).any_string_value(pred)
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        JsonEvent::borrow(self.value())
            .visit_string_values(&mut |s| out.push(Cow::Owned(s.to_owned())));
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        JsonEvent::borrow(self.value()).visit_string_values(visit)
    }

    fn to_json(&self) -> Value {
        self.value().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RECORD: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","arn":"arn:aws:iam::111122223333:root","sessionContext":{"attributes":{"mfaAuthenticated":"false"}}},"eventName":"ConsoleLogin","requestParameters":null,"n":42,"f":1.5,"ok":true,"esc":"a\"b","items":[{"k":"v1"},{"k":"v2"}],"additionalEventData":{"MFAUsed":"No"}}"#;

    #[test]
    fn lazy_fields_match_the_engine_json_walker() {
        let record = Record::parse(RECORD.as_bytes()).expect("parse");
        let value: Value = serde_json::from_str(RECORD).expect("json");
        let reference = JsonEvent::borrow(&value);
        for path in [
            "eventName",
            "userIdentity.type",
            "userIdentity.sessionContext.attributes.mfaAuthenticated",
            "requestParameters",
            "requestParameters.userName",
            "n",
            "f",
            "ok",
            "esc",
            "items.k",
            "items[1].k",
            "userIdentity",
            "missing",
            "missing.deeper",
            "eventName.deeper",
            "additionalEventData.MFAUsed",
        ] {
            assert_eq!(
                record.get_field(path).map(into_owned),
                reference.get_field(path).map(into_owned),
                "{path}"
            );
        }
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value_on_every_path() {
        let doc = r#"{"userIdentity":{"type":"IAMUser","type":"Root"},"userIdentity":{"type":"AssumedRole","arn":"a"},"items":[1],"items":[{"k":"v"}]}"#;
        let record = Record::parse(doc.as_bytes()).expect("parse");
        let value: Value = serde_json::from_str(doc).expect("json");
        let reference = JsonEvent::borrow(&value);
        for path in [
            "userIdentity.type",
            "userIdentity.arn",
            "userIdentity",
            "items.k",
        ] {
            assert_eq!(
                record.get_field(path).map(into_owned),
                reference.get_field(path).map(into_owned),
                "{path}"
            );
        }
        assert_eq!(
            record.str_at("userIdentity.type").as_deref(),
            Some("AssumedRole")
        );
    }

    #[test]
    fn accessors_are_lenient() {
        let record = Record::parse(RECORD.as_bytes()).expect("parse");
        assert_eq!(record.str_at("userIdentity.type").as_deref(), Some("Root"));
        assert_eq!(record.str_at("esc").as_deref(), Some("a\"b"));
        assert_eq!(record.str_at("n"), None);
        assert!(!record.has("requestParameters"));
        assert!(record.has("userIdentity"));
        assert_eq!(record.value()["n"], json!(42));
    }

    #[test]
    fn rejects_non_objects() {
        assert!(Record::parse(b"[1,2]").is_err());
        assert!(Record::parse(b"{\"a\":").is_err());
        assert!(Record::parse(b"{\"a\":\"\xff\"}").is_err());
    }
}
