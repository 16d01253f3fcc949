//! The JSON text of one object → where the keys and values of its members, and of the objects
//! nested in it, lie, validated in the same pass.
//!
//! This is what makes a record cheap: the reader finds where a record ends and lays out its
//! members in one pass over its bytes, and [`super::Record`] reads fields, nested ones
//! included, from those spans without building or scanning anything again. It accepts exactly
//! the JSON that `serde_json` accepts when it reads an object's keys and skips its values (the
//! whole record is checked as UTF-8 separately), so a record it passes is one `serde_json`
//! would have parsed. What it does not decide on its own, it leaves to `serde_json`: an escaped
//! key where members are laid out (which `serde_json` decodes, and may reject), nesting deeper
//! than [`MAX_DEPTH`], or any invalid byte: the caller then parses with `serde_json`, whose
//! error names the problem.
//! <https://www.rfc-editor.org/rfc/rfc8259>

/// Deepest nesting scanned here; deeper objects are left to `serde_json` (CloudTrail records
/// nest a handful of levels).
pub const MAX_DEPTH: u32 = 128;

/// Deepest object whose members are laid out. Objects nest inside objects, without an array
/// between, a handful of levels in CloudTrail (`userIdentity.sessionContext.sessionIssuer`);
/// a record that nests them deeper is left to `serde_json`.
const LAID_OUT_DEPTH: usize = 32;

/// One member of an object: byte ranges, relative to the outermost object's `{`, of its key
/// (quotes included) and of its value's JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub key: (u32, u32),
    pub value: (u32, u32),
    /// Where the members its value holds, when an object, are laid out in
    /// [`Layout::nested`], with their own descendants: see [`members_of`].
    pub inner: (u32, u32),
}

/// The members of an object and of the objects nested in it, as [`scan`] lays them out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The outermost object's members, in order: the ones read most, side by side.
    pub top: Vec<Member>,
    /// The nested objects' members, each after its descendants: the members of the object
    /// member `m` holds are the last of `m.inner`, then the one before its own descendants,
    /// and so on.
    pub nested: Vec<Member>,
}

impl Layout {
    fn clear(&mut self) {
        self.top.clear();
        self.nested.clear();
    }
}

/// The members of the object member `holder` holds, last first, skipping their descendants.
pub fn members_of<'l>(
    layout: &'l Layout,
    holder: &Member,
) -> impl Iterator<Item = &'l Member> + use<'l> {
    let (start, mut i) = holder.inner;
    std::iter::from_fn(move || {
        if i <= start {
            return None;
        }
        let member = &layout.nested[i as usize - 1];
        i = member.inner.0;
        Some(member)
    })
}

/// What scanning an object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A valid object ends just before this index; its members were laid out.
    Complete(usize),
    /// The bytes end inside the object: read more.
    Incomplete,
    /// Not an object this scanner vouches for (see the module docs): ask `serde_json`.
    Unsure,
}

/// The member being read in an object whose members are laid out.
#[derive(Debug, Clone, Copy, Default)]
struct Open {
    key: (u32, u32),
    value_start: u32,
    first: u32,
}

/// Scans the object whose `{` is at `buf[from]`, laying out in `layout` (cleared first) its
/// members and those of every object nested in it through objects only (members of objects
/// inside arrays are not laid out: paths through arrays are read another way).
pub fn scan(buf: &[u8], from: usize, layout: &mut Layout) -> Scan {
    layout.clear();
    if buf.get(from) != Some(&b'{') {
        return Scan::Unsure;
    }
    match scan_from(buf, from, layout) {
        Ok(end) => Scan::Complete(end),
        Err(scan) => scan,
    }
}

/// [`scan`] once the `{` is found: the index just past the object, or why not.
///
/// Each turn of the loop reads one member or element, from just inside its container or just
/// past a comma, and then everything that follows its value up to the next comma, closing
/// containers on the way. That keeps a `"key":"value",` to a few predictable branches.
fn scan_from(buf: &[u8], from: usize, layout: &mut Layout) -> Result<usize, Scan> {
    let rel = |i: usize| (i - from) as u32;
    let mut i = from + 1;
    // Bit d-1 set: the container at depth d is an array. Depth 1 is the object itself.
    let mut arrays: u128 = 0;
    let mut depth: u32 = 1;
    // Containers at depths 1..=chain are all objects: those at `chain` have members laid out.
    let mut chain: u32 = 1;
    let mut open = [Open::default(); LAID_OUT_DEPTH + 1];
    // Just inside a container, where its closing bracket may come.
    let mut first = true;
    loop {
        let in_array = arrays & (1u128 << (depth - 1)) != 0;
        let mut c = next(buf, &mut i)?;
        // An empty container holds no value: the loop below reads its closing bracket.
        let empty = first && c == if in_array { b']' } else { b'}' };
        if !empty {
            if !in_array {
                if c != b'"' {
                    return Err(Scan::Unsure);
                }
                let (end, escaped) = string_end(buf, i + 1)?;
                if chain == depth {
                    // serde_json decodes keys (and may reject their escapes).
                    if escaped {
                        return Err(Scan::Unsure);
                    }
                    open[depth as usize].key = (rel(i), rel(end));
                }
                i = end;
                if next(buf, &mut i)? != b':' {
                    return Err(Scan::Unsure);
                }
                i += 1;
                c = next(buf, &mut i)?;
            }
            if chain == depth {
                let at = &mut open[depth as usize];
                at.value_start = rel(i);
                at.first = layout.nested.len() as u32;
            }
            match c {
                b'"' => i = string_end(buf, i + 1)?.0,
                b'{' | b'[' => {
                    if depth >= MAX_DEPTH {
                        return Err(Scan::Unsure);
                    }
                    let bit = 1u128 << depth;
                    if c == b'[' {
                        arrays |= bit;
                    } else {
                        arrays &= !bit;
                        if chain == depth {
                            if depth as usize >= LAID_OUT_DEPTH {
                                return Err(Scan::Unsure);
                            }
                            chain += 1;
                        }
                    }
                    depth += 1;
                    i += 1;
                    first = true;
                    continue;
                }
                b't' | b'f' | b'n' => {
                    let word: &[u8] = match c {
                        b't' => b"true",
                        b'f' => b"false",
                        _ => b"null",
                    };
                    let have = &buf[i..buf.len().min(i + word.len())];
                    if !word.starts_with(have) {
                        return Err(Scan::Unsure);
                    }
                    if have.len() < word.len() {
                        return Err(Scan::Incomplete);
                    }
                    i += word.len();
                }
                b'-' | b'0'..=b'9' => i = number_end(buf, i)?,
                _ => return Err(Scan::Unsure),
            }
        }
        // A value ends at `i`: lay it out, then read on to the next comma, closing the
        // containers that end on the way (each of them a value that ends in turn).
        let mut ended = !empty;
        loop {
            if ended && chain == depth {
                let at = open[depth as usize];
                let member = Member {
                    key: at.key,
                    value: (at.value_start, rel(i)),
                    inner: (at.first, layout.nested.len() as u32),
                };
                if depth == 1 {
                    layout.top.push(member);
                } else {
                    layout.nested.push(member);
                }
            }
            ended = true;
            let in_array = arrays & (1u128 << (depth - 1)) != 0;
            match (next(buf, &mut i)?, in_array) {
                (b',', _) => {
                    i += 1;
                    first = false;
                    break;
                }
                (b']', true) | (b'}', false) => {
                    i += 1;
                    if chain == depth {
                        chain -= 1;
                    }
                    depth -= 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                _ => return Err(Scan::Unsure),
            }
        }
    }
}

/// The byte at `i` after any whitespace, which `i` is moved past (CloudTrail writes none
/// between tokens; others may).
#[inline(always)]
fn next(buf: &[u8], i: &mut usize) -> Result<u8, Scan> {
    loop {
        let Some(&c) = buf.get(*i) else {
            return Err(Scan::Incomplete);
        };
        if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            return Ok(c);
        }
        *i += 1;
    }
}

/// Bytes of `word` that are zero, flagged in their high bit. Exact for the lowest flagged
/// byte (a borrow can only flag bytes above a true one), which is all that is read.
#[inline]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(0x0101_0101_0101_0101) & !word & 0x8080_8080_8080_8080
}

/// Index just past the closing quote of the string whose contents start at `from`, and whether
/// it holds an escape: escapes must be JSON's, and control characters must be escaped, as
/// `serde_json` requires.
#[inline(always)]
fn string_end(buf: &[u8], mut i: usize) -> Result<(usize, bool), Scan> {
    let mut escaped = false;
    const QUOTE: u64 = 0x2222_2222_2222_2222;
    const BACKSLASH: u64 = 0x5c5c_5c5c_5c5c_5c5c;
    const SPACE: u64 = 0x2020_2020_2020_2020;
    loop {
        // Eight bytes at a time up to the next quote, backslash or control character.
        while let Some(chunk) = buf.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let special = zero_bytes(word ^ QUOTE)
                | zero_bytes(word ^ BACKSLASH)
                | (word.wrapping_sub(SPACE) & !word & 0x8080_8080_8080_8080);
            if special != 0 {
                i += (special.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        let Some(&c) = buf.get(i) else {
            return Err(Scan::Incomplete);
        };
        match c {
            b'"' => return Ok((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                let Some(&e) = buf.get(i + 1) else {
                    return Err(Scan::Incomplete);
                };
                match e {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let Some(hex) = buf.get(i + 2..i + 6) else {
                            return if buf[i + 2..].iter().all(u8::is_ascii_hexdigit) {
                                Err(Scan::Incomplete)
                            } else {
                                Err(Scan::Unsure)
                            };
                        };
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Err(Scan::Unsure);
                        }
                        i += 6;
                    }
                    _ => return Err(Scan::Unsure),
                }
            }
            0..=0x1f => return Err(Scan::Unsure),
            _ => i += 1,
        }
    }
}

/// Index just past the number starting at `buf[i]`, in JSON's grammar:
/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number_end(buf: &[u8], mut i: usize) -> Result<usize, Scan> {
    let digits = |i: &mut usize| -> Result<usize, Scan> {
        let start = *i;
        while let Some(b'0'..=b'9') = buf.get(*i) {
            *i += 1;
        }
        if *i == buf.len() {
            return Err(Scan::Incomplete);
        }
        Ok(*i - start)
    };
    if buf[i] == b'-' {
        i += 1;
    }
    match buf.get(i) {
        None => return Err(Scan::Incomplete),
        Some(b'0') => {
            i += 1;
            match buf.get(i) {
                None => return Err(Scan::Incomplete),
                Some(b'0'..=b'9') => return Err(Scan::Unsure),
                Some(_) => {}
            }
        }
        Some(b'1'..=b'9') => {
            digits(&mut i)?;
        }
        Some(_) => return Err(Scan::Unsure),
    }
    if buf[i] == b'.' {
        i += 1;
        if digits(&mut i)? == 0 {
            return Err(Scan::Unsure);
        }
    }
    if matches!(buf[i], b'e' | b'E') {
        i += 1;
        match buf.get(i) {
            None => return Err(Scan::Incomplete),
            Some(b'+' | b'-') => i += 1,
            Some(_) => {}
        }
        if digits(&mut i)? == 0 {
            return Err(Scan::Unsure);
        }
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(json: &str) -> Result<Vec<(String, String)>, Scan> {
        let mut out = Layout::default();
        match scan(json.as_bytes(), 0, &mut out) {
            Scan::Complete(end) => {
                assert_eq!(end, json.len(), "{json}");
                Ok(out
                    .top
                    .iter()
                    .map(|m| {
                        let text = |(a, b): (u32, u32)| json[a as usize..b as usize].to_owned();
                        (text(m.key), text(m.value))
                    })
                    .collect())
            }
            other => Err(other),
        }
    }

    #[test]
    fn members_and_their_raw_values() {
        let json = r#"{"a" : 1, "b":{"c":[1,-2.5e+3,{"d":null}],"e":"x\"}"},"f":[],"g":{},"h":"\u00e9 é","i":true}"#;
        let got = members(json).expect("valid");
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["\"a\"", "\"b\"", "\"f\"", "\"g\"", "\"h\"", "\"i\""]);
        assert_eq!(got[0].1, "1");
        assert_eq!(got[1].1, r#"{"c":[1,-2.5e+3,{"d":null}],"e":"x\"}"}"#);
        assert_eq!(got[2].1, "[]");
        assert_eq!(got[4].1, r#""\u00e9 é""#);
        assert_eq!(members("{}").expect("empty"), vec![]);
    }

    #[test]
    fn nested_objects_are_laid_out_through_objects_only() {
        let json = r#"{"u":{"t":"Root","s":{"i":{"arn":"x"},"m":"false"}},"a":[{"k":"v"}],"e":{}}"#;
        let mut out = Layout::default();
        assert_eq!(
            scan(json.as_bytes(), 0, &mut out),
            Scan::Complete(json.len())
        );
        let text = |(a, b): (u32, u32)| &json[a as usize..b as usize];
        // Each object's own members, last first.
        let keys = |holder: &Member| -> Vec<&str> {
            members_of(&out, holder).map(|m| text(m.key)).collect()
        };
        let [u, a, e] = [out.top[0], out.top[1], out.top[2]];
        assert_eq!(keys(&u), [r#""s""#, r#""t""#]);
        let s = *members_of(&out, &u).next().expect("s");
        assert_eq!(keys(&s), [r#""m""#, r#""i""#]);
        let i = *members_of(&out, &s).nth(1).expect("i");
        assert_eq!(text(i.value), r#"{"arn":"x"}"#);
        assert_eq!(keys(&i), [r#""arn""#]);
        assert!(keys(&e).is_empty(), "an empty object has no members");
        assert!(
            keys(&a).is_empty(),
            "members inside arrays are not laid out"
        );
        assert_eq!((out.top.len(), out.nested.len()), (3, 5));
    }

    #[test]
    fn an_escaped_nested_key_is_left_to_serde_json() {
        let mut out = Layout::default();
        let nested = r#"{"a":{"b\"c":1}}"#;
        assert_eq!(scan(nested.as_bytes(), 0, &mut out), Scan::Unsure);
        let in_array = r#"{"a":[{"b\"c":1}]}"#;
        assert_eq!(
            scan(in_array.as_bytes(), 0, &mut out),
            Scan::Complete(in_array.len())
        );
        let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let fits = deep(LAID_OUT_DEPTH);
        assert_eq!(
            scan(fits.as_bytes(), 0, &mut out),
            Scan::Complete(fits.len())
        );
        assert_eq!(out.nested.len(), LAID_OUT_DEPTH - 1);
        assert_eq!(
            scan(deep(LAID_OUT_DEPTH + 1).as_bytes(), 0, &mut out),
            Scan::Unsure
        );
    }

    #[test]
    fn what_serde_json_rejects_is_left_to_it() {
        for bad in [
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":tru}"#,
            r#"{"a":"x\q"}"#,
            r#"{"a":"\u12g4"}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":[1,]}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":[1}"#,
            r#"{"a":{"b":1]}"#,
            r#"{1:2}"#,
            r#"{"\u0061":1}"#,
        ] {
            assert_eq!(members(bad), Err(Scan::Unsure), "{bad}");
        }
    }

    #[test]
    fn a_cut_off_object_asks_for_more() {
        let json = r#"{"a":[1,{"b":"x\u00e9","c":-12.5e3,"d":true}],"e":"#;
        for end in 1..json.len() {
            assert_eq!(
                members(&json[..end]),
                Err(Scan::Incomplete),
                "{}",
                &json[..end]
            );
        }
    }

    #[test]
    fn nesting_past_the_limit_is_left_to_serde_json() {
        let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(members(&deep(MAX_DEPTH as usize - 1)).is_ok());
        assert_eq!(members(&deep(MAX_DEPTH as usize)), Err(Scan::Unsure));
    }
}
