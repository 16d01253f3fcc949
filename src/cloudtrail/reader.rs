//! Bytes of one log file → the raw bytes of each record in its `Records` array, one at a time.
//!
//! A CloudTrail log file is a single JSON object `{"Records":[{...},{...}]}`, usually gzipped,
//! sometimes gzipped as several members, and occasionally plain. Files range from a few records
//! to hundreds of megabytes, so the document is never held whole: a small window of the
//! decompressed stream is scanned for the boundaries of each record, and each record's bytes are
//! handed out before the window moves on. Memory use is the window (a few hundred KiB, or one
//! record if a record is larger), whatever the size of the file.
//!
//! The scanner only finds boundaries; each record is validated by `serde_json` when it is
//! parsed (see [`super::record`]), so a malformed record is reported with its index and
//! skipped, and reading goes on. Only damage that hides where records end (a truncated or
//! corrupt stream, an oversized record) stops the file.
//!
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-log-file-examples.html>

use std::io::{self, BufRead, BufReader, Read};

use memchr::memchr2;

use super::object::{self, Layout};

/// How many decompressed bytes are read from the source at a time.
const CHUNK: usize = 256 * 1024;

/// Largest single record accepted. CloudTrail caps an event at 256 KB; anything far beyond that
/// is not CloudTrail and must not make the window grow without bound.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Why a log file could not be read to its end.
///
/// Offsets count decompressed bytes from the start of the document, and `record` is the
/// zero-based index of the record being read, so an operator can find the damage.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The gzip stream is corrupt or the source failed.
    #[error("cannot read past decompressed byte {offset} (record {record}): {source}")]
    Io {
        offset: u64,
        record: u64,
        #[source]
        source: io::Error,
    },
    /// More decompressed bytes than the configured cap: likely a decompression bomb.
    #[error("decompressed size exceeds the cap of {cap} bytes (record {record})")]
    TooLarge { cap: u64, record: u64 },
    /// The bytes are not the JSON shape of a CloudTrail log file.
    #[error("invalid JSON at decompressed byte {offset} (record {record}): {message}")]
    Syntax {
        offset: u64,
        record: u64,
        message: String,
    },
    /// The document ends before the `Records` array is closed.
    #[error("file is truncated: it ends at decompressed byte {offset}, inside record {record}")]
    Truncated { offset: u64, record: u64 },
    /// The bytes are JSON but not a shape of CloudTrail input that [`open_any`] reads.
    #[error("{message} (at decompressed byte {offset}, record {record})")]
    Shape {
        offset: u64,
        record: u64,
        message: String,
    },
    /// One record is larger than [`MAX_RECORD_BYTES`].
    #[error("record {record} at decompressed byte {offset} is larger than {limit} bytes")]
    RecordTooLarge {
        offset: u64,
        record: u64,
        limit: usize,
    },
}

impl ReadError {
    /// Index of the record that was being read when reading stopped: what the property tests
    /// and fuzz targets hold every error to.
    pub fn record_index(&self) -> u64 {
        match self {
            ReadError::Io { record, .. }
            | ReadError::TooLarge { record, .. }
            | ReadError::Syntax { record, .. }
            | ReadError::Truncated { record, .. }
            | ReadError::Shape { record, .. }
            | ReadError::RecordTooLarge { record, .. } => *record,
        }
    }
}

/// Wraps the decompressed stream and fails once more than `cap` bytes come out of it.
///
/// This is the only place a gzip decoder is built (see `clippy.toml`), so every inflate in the
/// program is size-capped.
struct Capped<R> {
    inner: R,
    remaining: u64,
}

/// Marker carried inside the `io::Error` so the cap is reported as [`ReadError::TooLarge`].
#[derive(Debug)]
struct CapExceeded;

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompressed size cap exceeded")
    }
}

impl std::error::Error for CapExceeded {}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // Only fail if there really is more: a file exactly at the cap is fine.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(CapExceeded)),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Opens a log file's bytes: gzip (one or more members) when it starts with the gzip magic,
/// plain JSON otherwise. At most `cap` decompressed bytes are read. Only the S3 log file shape
/// `{"Records":[...]}` is read; see [`open_any`] for the others.
pub fn open<R: Read + Send + 'static>(source: R, cap: u64) -> io::Result<LogReader> {
    open_shapes(source, cap, Shapes::LogFile)
}

/// Like [`open`], but reads every shape of CloudTrail input people keep, told apart by
/// content (see [`Shapes::Any`]).
pub fn open_any<R: Read + Send + 'static>(source: R, cap: u64) -> io::Result<LogReader> {
    open_shapes(source, cap, Shapes::Any)
}

fn open_shapes<R: Read + Send + 'static>(
    source: R,
    cap: u64,
    shapes: Shapes,
) -> io::Result<LogReader> {
    let mut buffered = BufReader::with_capacity(64 * 1024, source);
    let head = buffered.fill_buf()?;
    let gzipped = head.starts_with(&[0x1f, 0x8b]);
    if !gzipped {
        return Ok(LogReader::new(
            Box::new(Capped {
                inner: buffered,
                remaining: cap,
            }),
            cap,
            shapes,
        ));
    }
    // Most log files are small: read them whole and inflate them in one call.
    let mut compressed = spare::COMPRESSED.take();
    compressed.clear();
    let read = (&mut buffered)
        .take(WHOLE_MAX_COMPRESSED as u64 + 1)
        .read_to_end(&mut compressed);
    if read.is_ok()
        && compressed.len() <= WHOLE_MAX_COMPRESSED
        && let Some(inflated) = inflate_whole(&compressed, cap)
    {
        spare::keep(&spare::COMPRESSED, compressed);
        return Ok(LogReader::whole(inflated, cap, shapes));
    }
    // Otherwise stream, from the bytes already read on (and to the read's error, if any).
    let replay = Replay {
        head: io::Cursor::new(compressed),
        error: read.err(),
        rest: buffered,
    };
    #[allow(clippy::disallowed_types)] // the one capped decoder; see `Capped`
    let inner = Capped {
        inner: flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, replay)),
        remaining: cap,
    };
    Ok(LogReader::new(Box::new(inner), cap, shapes))
}

/// Gzip files up to this size are read whole, to be inflated in one call ([`inflate_whole`]).
const WHOLE_MAX_COMPRESSED: usize = 8 << 20;

/// The most a file inflated in one call may hold; larger ones stream through a window. A
/// CloudTrail log file holds at most a few tens of MB.
const WHOLE_MAX_INFLATED: u64 = 64 << 20;

/// A whole gzip file inflated in one call by libdeflate, the fastest inflate there is, when
/// that is sure to give what streaming would: `None` to stream it instead.
///
/// The output is sized by the trailer's ISIZE, checked against the cap before anything is
/// inflated. ISIZE is the size modulo 2^32 and only the last member's, and libdeflate stops at
/// the end of the first member (whose own CRC-32 and ISIZE it checks), so the first member
/// must inflate to exactly the file's ISIZE and be the only member: another member, damage or
/// trailing bytes whose last four are not that size all fall back to streaming, which reports
/// or reads them as it always did.
/// <https://www.rfc-editor.org/rfc/rfc1952#section-2.3.1>
fn inflate_whole(gz: &[u8], cap: u64) -> Option<Vec<u8>> {
    if gz.len() < 18 {
        return None;
    }
    let size_bytes = &gz[gz.len() - 4..];
    let size = u64::from(u32::from_le_bytes(size_bytes.try_into().expect("4 bytes")));
    if size > cap.min(WHOLE_MAX_INFLATED) {
        return None;
    }
    // Whatever the spare held is overwritten: only bytes past its length are zeroed first.
    let mut out = spare::DOCUMENT.take();
    out.resize(usize::try_from(size).ok()?, 0);
    let n = libdeflater::Decompressor::new()
        .gzip_decompress(gz, &mut out)
        .ok()?;
    if n != out.len() {
        return None;
    }
    // The first member checked out and ends in the file's ISIZE; a second member would start
    // `1f 8b 08` right after it. Looking for that pair, rather than for `1f 8b 08` alone, keeps
    // the one-member files whose compressed bytes hold those three by chance (one in twenty of
    // 800 KB) off the slower streaming path. It also spares a second CRC-32 of the output: the
    // first member's is checked, and it can only be the file's last if nothing follows it.
    let another = memchr::memmem::find_iter(gz, &[0x1f, 0x8b, 0x08])
        .any(|at| at >= 18 && &gz[at - 4..at] == size_bytes);
    (!another).then_some(out)
}

/// The buffers of the last file a thread read whole, kept for its next one. A fresh buffer of
/// a few MB costs a page fault and a zeroed page for every 4 KiB, about a sixth of what
/// inflating into it costs; a scan or a daemon reads file after file on the same threads.
mod spare {
    use std::cell::Cell;
    use std::thread::LocalKey;

    /// A bigger buffer is not kept: a thread holds at most this much for each use.
    const MAX_KEPT: usize = 16 << 20;

    type Spare = LocalKey<Cell<Vec<u8>>>;

    thread_local! {
        pub static COMPRESSED: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
        pub static DOCUMENT: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }

    /// Keeps `buffer` as the thread's spare: taken back (`take`), it holds what was left in it.
    pub fn keep(spare: &'static Spare, buffer: Vec<u8>) {
        if buffer.capacity() <= MAX_KEPT {
            spare.set(buffer);
        }
    }
}

/// Bytes already read from a source, then the error that stopped the read (if one did), then
/// the rest of the source: what a streaming decoder reads when the whole-file path gave up.
struct Replay<R> {
    head: io::Cursor<Vec<u8>>,
    error: Option<io::Error>,
    rest: R,
}

impl<R: Read> Read for Replay<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.head.get_ref().is_empty() {
            let n = self.head.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // Replayed: the memory goes back before the rest streams.
            self.head = io::Cursor::new(Vec::new());
        }
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.rest.read(buf)
    }
}

/// Which document shapes a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shapes {
    /// Only an S3 log file, `{"Records":[...]}`: what CloudTrail writes to a trail's bucket.
    /// Another JSON object finishes as [`Finish::NoRecords`].
    LogFile,
    /// Any sequence of top-level JSON values (one document, JSON lines, or documents one
    /// after another), each one of:
    /// - an envelope holding records: `{"Records":[...]}` (S3 log file), `{"Events":[...]}`
    ///   (`aws cloudtrail lookup-events`), `{"QueryResultRows":[...]}` (CloudTrail Lake
    ///   `get-query-results`), streamed element by element whatever their size;
    /// - an array, each element an item;
    /// - any other object, an item: a record, an EventBridge event, a lookup-events entry.
    ///
    /// The envelope is told by its first key, so an S3 log file costs one key's peek more.
    /// Items are handed out as they are; [`super::shape::record_json`] takes the record out.
    Any,
}

/// What a handed-out element is, so the record can be taken out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// An element of `Records`: the record itself.
    Record,
    /// An element of lookup-events' `Events`: the record is its `CloudTrailEvent` string.
    LookupEvent,
    /// A row of Lake's `QueryResultRows`: the record is its `eventJson` column.
    LakeRow,
    /// A top-level value or an element of a top-level array: its shape is told from its keys.
    Unknown,
}

/// Top-level keys that open an envelope rather than a record or an event: the element kind of
/// the key's array, or `None` for metadata that sits beside it.
fn envelope_key(key: &str) -> Option<Option<Item>> {
    match key {
        "Records" => Some(Some(Item::Record)),
        "Events" => Some(Some(Item::LookupEvent)),
        "QueryResultRows" => Some(Some(Item::LakeRow)),
        // Around QueryResultRows in get-query-results, before it in the CLI's output.
        // https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_GetQueryResults.html
        "NextToken" | "QueryStatus" | "QueryStatistics" | "ErrorMessage" => Some(None),
        _ => None,
    }
}

/// A key's name from its JSON text (quotes included), decoding escapes only when present.
fn key_name(key: &[u8]) -> std::borrow::Cow<'_, str> {
    if memchr::memchr(b'\\', key).is_none()
        && let Some(inner) = key.get(1..key.len().saturating_sub(1))
        && let Ok(text) = std::str::from_utf8(inner)
    {
        return std::borrow::Cow::Borrowed(text);
    }
    serde_json::from_slice::<String>(key)
        .map(std::borrow::Cow::Owned)
        .unwrap_or_default()
}

/// Where the scanner is in the document's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `{`.
    Start,
    /// Expecting a key of the top-level object (or `}` when `first`).
    Key { first: bool },
    /// After a top-level value: expecting `,` or `}`.
    AfterValue,
    /// Inside `Records`: expecting a record (or `]` when `first`).
    Element { first: bool },
    /// After a record: expecting `,` or `]`.
    AfterElement,
    /// Between top-level values ([`Shapes::Any`] only): expecting another value or the end.
    Between,
    /// The top-level object is closed.
    Done,
}

/// What the end of a document looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A `Records` array was read (possibly empty).
    Records,
    /// The document is a JSON object without `Records`, e.g. a digest file.
    NoRecords,
}

/// Result of scanning for the end of a token in the window.
enum Scan {
    /// The token ends just before this index.
    Complete(usize),
    /// The window ends inside the token: read more.
    Incomplete,
}

/// The bytes of one record and where it sits in the document.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The record's JSON text.
    pub bytes: &'a [u8],
    /// Zero-based index in the `Records` array (with [`Shapes::Any`], among all items).
    pub index: u64,
    /// Decompressed offset of its first byte.
    pub offset: u64,
    /// What the bytes are.
    pub item: Item,
    /// For an element of `Records`: its members, when the reader's one pass over it laid them
    /// out and found it valid (see [`super::object`]); `None` leaves the record to be parsed
    /// whole.
    pub members: Option<&'a Layout>,
}

/// Streams the records of one log file.
pub struct LogReader {
    source: Box<dyn Read + Send>,
    cap: u64,
    /// Window of decompressed bytes; `buf[start..end]` is not yet consumed.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Document offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// The window holds the whole document, inflated in one call.
    whole: bool,
    state: State,
    saw_records: bool,
    /// Records handed out so far.
    index: u64,
    shapes: Shapes,
    /// What the elements of the array being read are.
    element: Item,
    /// Whether that array sits inside an envelope object (rather than at the top level).
    in_envelope: bool,
    /// Whether the envelope being read had an array of records.
    envelope_held_items: bool,
    /// Top-level values begun ([`Shapes::Any`]).
    values: u64,
    /// The members of the record last handed out, when scanned.
    members: Layout,
}

impl Drop for LogReader {
    fn drop(&mut self) {
        if self.whole {
            spare::keep(&spare::DOCUMENT, std::mem::take(&mut self.buf));
        }
    }
}

impl LogReader {
    fn new(source: Box<dyn Read + Send>, cap: u64, shapes: Shapes) -> Self {
        LogReader {
            source,
            cap,
            buf: vec![0; CHUNK * 2],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            whole: false,
            state: State::Start,
            saw_records: false,
            index: 0,
            shapes,
            element: Item::Record,
            in_envelope: true,
            envelope_held_items: false,
            values: 0,
            members: Layout::default(),
        }
    }

    /// A reader over a file already inflated whole: the window is the document.
    fn whole(document: Vec<u8>, cap: u64, shapes: Shapes) -> Self {
        let mut reader = LogReader::new(Box::new(io::empty()), cap, shapes);
        reader.end = document.len();
        reader.buf = document;
        reader.eof = true;
        reader.whole = true;
        reader
    }

    /// With the whole document in the window, a record's size is checked here, as streaming
    /// checks it when the window would grow past [`MAX_RECORD_BYTES`].
    fn check_record_size(&self, end: usize) -> Result<(), ReadError> {
        if self.whole && end - self.start > MAX_RECORD_BYTES {
            return Err(ReadError::RecordTooLarge {
                offset: self.offset(self.start),
                record: self.index,
                limit: MAX_RECORD_BYTES,
            });
        }
        Ok(())
    }

    fn shape_error(&self, at: usize, message: impl Into<String>) -> ReadError {
        ReadError::Shape {
            offset: self.offset(at),
            record: self.index,
            message: message.into(),
        }
    }

    /// With `buf[start]` at the `{` of an object, the name of its first key, reading more as
    /// needed; `None` when the object is empty, its first key is not a string, or the input
    /// ends first (left for [`Self::value_end`] to report). The `{` stays unconsumed.
    fn first_key(&mut self) -> Result<Option<String>, ReadError> {
        loop {
            let mut i = self.start + 1;
            while i < self.end && matches!(self.buf[i], b' ' | b'\n' | b'\r' | b'\t') {
                i += 1;
            }
            if i < self.end {
                if self.buf[i] != b'"' {
                    return Ok(None);
                }
                if let Some(end) = string_end(&self.buf[..self.end], i + 1) {
                    return Ok(Some(key_name(&self.buf[i..end]).into_owned()));
                }
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// [`Shapes::Any`]: the next top-level value begins (or the input ends). When it is an
    /// item on its own, the window range of its bytes.
    fn next_value(&mut self) -> Result<Option<(usize, usize)>, ReadError> {
        match self.peek()? {
            None if self.values == 0 => Err(self.shape_error(self.start, "the file is empty")),
            None => {
                self.state = State::Done;
                Ok(None)
            }
            Some(b'[') => {
                self.values += 1;
                self.saw_records = true;
                self.start += 1;
                self.element = Item::Unknown;
                self.in_envelope = false;
                self.state = State::Element { first: true };
                Ok(None)
            }
            Some(b'{') => {
                self.values += 1;
                self.saw_records = true;
                let first = self.first_key()?;
                if first.as_deref().and_then(envelope_key).is_some() {
                    self.start += 1;
                    self.in_envelope = true;
                    self.envelope_held_items = false;
                    self.state = State::Key { first: true };
                    return Ok(None);
                }
                // A record or an event on its own (or one line of JSON lines).
                let end = self.value_end()?;
                let begin = self.start;
                self.start = end;
                Ok(Some((begin, end)))
            }
            Some(_) => {
                let head = &self.buf[self.start..self.end.min(self.start + 16)];
                let message = format!(
                    "not CloudTrail JSON: expected an object or an array, found {:?}",
                    String::from_utf8_lossy(head)
                );
                Err(self.shape_error(self.start, message))
            }
        }
    }

    /// An envelope object or a top-level array was closed.
    fn close_top_level(&mut self) -> Result<(), ReadError> {
        if self.shapes == Shapes::LogFile {
            self.state = State::Done;
            return Ok(());
        }
        if self.in_envelope && !self.envelope_held_items {
            return Err(self.shape_error(
                self.start,
                "the object has no Records, Events or QueryResultRows array: no records to read",
            ));
        }
        self.state = State::Between;
        Ok(())
    }

    /// Records handed out so far.
    pub fn records_read(&self) -> u64 {
        self.index
    }

    /// Decompressed bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.base + self.start as u64
    }

    /// How the document ended; meaningful once [`Self::next_record`] returned `Ok(None)`.
    pub fn finish(&self) -> Finish {
        if self.saw_records {
            Finish::Records
        } else {
            Finish::NoRecords
        }
    }

    fn offset(&self, at: usize) -> u64 {
        self.base + at as u64
    }

    fn syntax(&self, at: usize, message: impl Into<String>) -> ReadError {
        ReadError::Syntax {
            offset: self.offset(at),
            record: self.index,
            message: message.into(),
        }
    }

    /// Reads more bytes into the window, keeping `buf[start..end]`. Returns false at EOF.
    fn fill(&mut self) -> Result<bool, ReadError> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < CHUNK {
            // The unconsumed part is one large record: grow the window, up to the limit.
            if self.end > MAX_RECORD_BYTES {
                return Err(ReadError::RecordTooLarge {
                    offset: self.offset(0),
                    record: self.index,
                    limit: MAX_RECORD_BYTES,
                });
            }
            let grown = (self.buf.len() * 2).max(self.end + CHUNK);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let offset = self.offset(self.end);
                    let record = self.index;
                    if e.get_ref().is_some_and(|inner| inner.is::<CapExceeded>()) {
                        return Err(ReadError::TooLarge {
                            cap: self.cap,
                            record,
                        });
                    }
                    return Err(ReadError::Io {
                        offset,
                        record,
                        source: e,
                    });
                }
            }
        }
    }

    /// Skips whitespace and returns the next byte without consuming it, reading more as needed.
    /// `None` at end of input.
    fn peek(&mut self) -> Result<Option<u8>, ReadError> {
        loop {
            while self.start < self.end {
                let b = self.buf[self.start];
                if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                    return Ok(Some(b));
                }
                self.start += 1;
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Like [`Self::peek`] but end of input inside the document is a truncation error.
    fn peek_in_document(&mut self) -> Result<u8, ReadError> {
        match self.peek()? {
            Some(b) => Ok(b),
            None => Err(ReadError::Truncated {
                offset: self.offset(self.end),
                record: self.index,
            }),
        }
    }

    /// Finds the end of the JSON value starting at `start`, reading more as needed.
    fn value_end(&mut self) -> Result<usize, ReadError> {
        loop {
            match scan_value(&self.buf[..self.end], self.start, self.eof) {
                Some(Scan::Complete(end)) => {
                    self.check_record_size(end)?;
                    return Ok(end);
                }
                Some(Scan::Incomplete) => {
                    self.check_record_size(self.end)?;
                    if !self.fill()? {
                        return Err(ReadError::Truncated {
                            offset: self.offset(self.end),
                            record: self.index,
                        });
                    }
                }
                None => return Err(self.syntax(self.start, "expected a JSON value")),
            }
        }
    }

    /// Like [`Self::value_end`] for an element of `Records`, in the same pass laying out its
    /// members when it is an object [`object::scan`] vouches for (then true).
    fn record_end(&mut self) -> Result<(usize, bool), ReadError> {
        loop {
            match object::scan(&self.buf[..self.end], self.start, &mut self.members) {
                object::Scan::Complete(end) => {
                    self.check_record_size(end)?;
                    return Ok((end, true));
                }
                // A valid beginning cut off by the window: the same as the plain scan's
                // `Incomplete`, since both track nesting alike on valid JSON.
                object::Scan::Incomplete => {
                    self.check_record_size(self.end)?;
                    if !self.fill()? {
                        return Err(ReadError::Truncated {
                            offset: self.offset(self.end),
                            record: self.index,
                        });
                    }
                }
                object::Scan::Unsure => return Ok((self.value_end()?, false)),
            }
        }
    }

    /// Returns the bytes of the next record, or `None` when the document is complete.
    ///
    /// The slice borrows the reader's window and is valid until the next call.
    pub fn next_record(&mut self) -> Result<Option<RawRecord<'_>>, ReadError> {
        loop {
            match self.state {
                State::Start | State::Between if self.shapes == Shapes::Any => {
                    if let Some((begin, end)) = self.next_value()? {
                        self.state = State::Between;
                        self.index += 1;
                        return Ok(Some(RawRecord {
                            bytes: &self.buf[begin..end],
                            index: self.index - 1,
                            offset: self.base + begin as u64,
                            item: Item::Unknown,
                            members: None,
                        }));
                    }
                    if self.state == State::Done {
                        return Ok(None);
                    }
                }
                State::Start | State::Between => match self.peek()? {
                    Some(b'{') => {
                        self.start += 1;
                        self.state = State::Key { first: true };
                    }
                    Some(_) => {
                        return Err(
                            self.syntax(self.start, "a CloudTrail log file must be a JSON object")
                        );
                    }
                    None => return Err(self.syntax(self.start, "the file is empty")),
                },
                State::Key { first } => match self.peek_in_document()? {
                    b'}' if first => {
                        self.start += 1;
                        self.close_top_level()?;
                    }
                    b'"' => {
                        let key_end = self.value_end()?;
                        let container = self.container(&self.buf[self.start..key_end]);
                        self.start = key_end;
                        if self.peek_in_document()? != b':' {
                            return Err(self.syntax(self.start, "expected ':' after a key"));
                        }
                        self.start += 1;
                        if let Some(item) = container {
                            if self.peek_in_document()? != b'[' {
                                let key = match item {
                                    Item::LookupEvent => "Events",
                                    Item::LakeRow => "QueryResultRows",
                                    Item::Record | Item::Unknown => "Records",
                                };
                                return Err(
                                    self.syntax(self.start, format!("{key} must be an array"))
                                );
                            }
                            self.start += 1;
                            self.saw_records = true;
                            self.element = item;
                            self.in_envelope = true;
                            self.envelope_held_items = true;
                            self.state = State::Element { first: true };
                        } else {
                            // Other top-level keys (digest metadata, future additions) are
                            // skipped, not parsed.
                            self.peek_in_document()?;
                            self.start = self.value_end()?;
                            self.state = State::AfterValue;
                        }
                    }
                    _ => return Err(self.syntax(self.start, "expected a key")),
                },
                State::AfterValue => match self.peek_in_document()? {
                    b',' => {
                        self.start += 1;
                        self.state = State::Key { first: false };
                    }
                    b'}' => {
                        self.start += 1;
                        self.close_top_level()?;
                    }
                    _ => return Err(self.syntax(self.start, "expected ',' or '}'")),
                },
                State::Element { first } => match self.peek_in_document()? {
                    b']' if first => {
                        self.start += 1;
                        self.close_array()?;
                    }
                    // Any JSON value is handed out, objects or not: its end is known, so a
                    // bad element costs only itself (the record parser rejects it) and the
                    // records after it are still read.
                    _ => {
                        let (end, scanned) = if self.element == Item::Record {
                            self.record_end()?
                        } else {
                            (self.value_end()?, false)
                        };
                        // Read `start` only now: filling the window may have moved it.
                        let begin = self.start;
                        self.start = end;
                        self.state = State::AfterElement;
                        self.index += 1;
                        return Ok(Some(RawRecord {
                            bytes: &self.buf[begin..end],
                            index: self.index - 1,
                            offset: self.base + begin as u64,
                            item: self.element,
                            members: scanned.then_some(&self.members),
                        }));
                    }
                },
                State::AfterElement => match self.peek_in_document()? {
                    b',' => {
                        self.start += 1;
                        self.state = State::Element { first: false };
                    }
                    b']' => {
                        self.start += 1;
                        self.close_array()?;
                    }
                    _ => return Err(self.syntax(self.start, "expected ',' or ']' after a record")),
                },
                State::Done => {
                    return match self.peek()? {
                        None => Ok(None),
                        Some(_) => {
                            Err(self.syntax(self.start, "unexpected bytes after the document"))
                        }
                    };
                }
            }
        }
    }
}

impl LogReader {
    /// The element kind of the array under a top-level key (its JSON text, quotes included),
    /// if it holds records. A key spelled with escapes (`"Re\u0063ords"`) is the same key to
    /// any JSON parser, so it is decoded rather than taken for another key, which would skip
    /// the file as holding no records.
    fn container(&self, key: &[u8]) -> Option<Item> {
        if key == b"\"Records\"" {
            return Some(Item::Record);
        }
        match self.shapes {
            Shapes::LogFile => (memchr::memchr(b'\\', key).is_some() && key_name(key) == "Records")
                .then_some(Item::Record),
            Shapes::Any => envelope_key(&key_name(key)).flatten(),
        }
    }

    /// The array being read was closed: back in its envelope, or between top-level values.
    fn close_array(&mut self) -> Result<(), ReadError> {
        if self.in_envelope {
            self.state = State::AfterValue;
            Ok(())
        } else {
            self.close_top_level()
        }
    }
}

/// Scans the JSON value starting at `buf[from]`. `None` when no value starts there.
///
/// Containers are matched by depth while skipping string contents; bracket kinds are not
/// checked here because each record is validated by serde_json afterwards.
fn scan_value(buf: &[u8], from: usize, eof: bool) -> Option<Scan> {
    let first = *buf.get(from)?;
    match first {
        b'"' => Some(match string_end(buf, from + 1) {
            Some(end) => Scan::Complete(end),
            None => Scan::Incomplete,
        }),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = from;
            while i < buf.len() {
                match buf[i] {
                    b'"' => match string_end(buf, i + 1) {
                        Some(end) => {
                            i = end;
                            continue;
                        }
                        None => return Some(Scan::Incomplete),
                    },
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(Scan::Complete(i + 1));
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            Some(Scan::Incomplete)
        }
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            let len = buf[from..]
                .iter()
                .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'E'))
                .map(|n| from + n);
            match len {
                Some(end) => Some(Scan::Complete(end)),
                None if eof => Some(Scan::Complete(buf.len())),
                None => Some(Scan::Incomplete),
            }
        }
        _ => None,
    }
}

/// Index just past the closing quote of a string whose contents start at `from`.
#[inline]
fn string_end(buf: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr2(b'"', b'\\', &buf[from.min(buf.len())..])?;
        if buf[at] == b'"' {
            return Some(at + 1);
        }
        // A backslash escapes the next byte, whatever it is.
        from = at + 2;
        if from > buf.len() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).expect("in-memory write");
        enc.finish().expect("in-memory gzip")
    }

    fn read_all(bytes: Vec<u8>) -> (Vec<String>, Result<Finish, ReadError>) {
        let mut reader = open(io::Cursor::new(bytes), u64::MAX).expect("open");
        let mut out = Vec::new();
        loop {
            match reader.next_record() {
                Ok(Some(r)) => out.push(String::from_utf8(r.bytes.to_vec()).expect("utf8")),
                Ok(None) => return (out, Ok(reader.finish())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    #[test]
    fn splits_records_with_tricky_strings() {
        let doc = br#" {"Records": [ {"a":"x\"}]{","b":[1,{"c":null}]} , {"d":"\\"}],"x":1} "#;
        let (records, end) = read_all(doc.to_vec());
        assert_eq!(end.expect("complete"), Finish::Records);
        assert_eq!(
            records,
            vec![r#"{"a":"x\"}]{","b":[1,{"c":null}]}"#, r#"{"d":"\\"}"#]
        );
    }

    #[test]
    fn gzip_multi_member_and_keys_after_records() {
        let doc = br#"{"Records":[{"n":1},{"n":2}],"trailer":{"k":[1,2]}}"#;
        let mut bytes = gzip(&doc[..20]);
        bytes.extend(gzip(&doc[20..]));
        let (records, end) = read_all(bytes);
        assert_eq!(records, vec![r#"{"n":1}"#, r#"{"n":2}"#]);
        assert_eq!(end.expect("complete"), Finish::Records);
    }

    #[test]
    fn only_one_member_files_are_inflated_whole() {
        // Stored (level 0) deflate blocks hold the bytes as they are: a member's magic inside
        // the compressed bytes, as compressed data sometimes holds it by chance.
        let stored = |bytes: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
            enc.write_all(bytes).expect("in-memory write");
            enc.finish().expect("in-memory gzip")
        };
        let magic_inside = stored(b"before \x1f\x8b\x08 after");
        assert!(memchr::memmem::find(&magic_inside[1..], &[0x1f, 0x8b, 0x08]).is_some());
        assert_eq!(
            inflate_whole(&magic_inside, u64::MAX).as_deref(),
            Some(&b"before \x1f\x8b\x08 after"[..])
        );

        // Two identical members: the first alone is a whole file's worth.
        let doc = br#"{"Records":[{"n":1}]}"#;
        let twice = [gzip(doc), gzip(doc)].concat();
        assert_eq!(inflate_whole(&twice, u64::MAX), None);
        // Members of the same size but other bytes: the file's ISIZE matches the first's.
        let same_size = [gzip(doc), gzip(br#"{"Records":[{"n":2}]}"#)].concat();
        assert_eq!(inflate_whole(&same_size, u64::MAX), None);

        let mut trailing = gzip(doc);
        trailing.extend_from_slice(b"junk");
        assert_eq!(inflate_whole(&trailing, u64::MAX), None);
    }

    #[test]
    fn records_key_spelled_with_escapes() {
        let doc = br#"{"x":1,"Re\u0063ords":[{"n":1}],"Record\u0073x":[{"n":2}]}"#;
        let (records, end) = read_all(doc.to_vec());
        assert_eq!(records, vec![r#"{"n":1}"#]);
        assert_eq!(end.expect("complete"), Finish::Records);
    }

    #[test]
    fn digest_shape_has_no_records() {
        let doc = br#"{"awsAccountId":"111122223333","logFiles":[{"s3Object":"k"}]}"#;
        let (records, end) = read_all(gzip(doc));
        assert!(records.is_empty());
        assert_eq!(end.expect("complete"), Finish::NoRecords);
    }

    #[test]
    fn truncated_document_reports_record_index() {
        let doc = br#"{"Records":[{"n":1},{"n":2},{"n":"#;
        let (records, end) = read_all(doc.to_vec());
        assert_eq!(records.len(), 2);
        let err = end.expect_err("truncated");
        assert!(
            matches!(err, ReadError::Truncated { record: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let doc = br#"{"Records":[{"n":1},{"n":2}]}"#.to_vec();
        let bytes = gzip(&doc);
        let (_, end) = read_all(bytes[..bytes.len() - 12].to_vec());
        end.expect_err("truncated gzip must not read as complete");
    }

    #[test]
    fn not_json() {
        let (_, end) = read_all(b"PK\x03\x04 zip bytes".to_vec());
        let err = end.expect_err("not json");
        assert!(err.to_string().contains("byte 0"), "{err}");
    }

    #[test]
    fn cap_stops_a_bomb() {
        let doc = format!(r#"{{"Records":[{{"pad":"{}"}}]}}"#, "a".repeat(1 << 20));
        let mut reader = open(io::Cursor::new(gzip(doc.as_bytes())), 4096).expect("open");
        let err = reader.next_record().expect_err("over the cap");
        assert!(
            matches!(err, ReadError::TooLarge { cap: 4096, .. }),
            "{err}"
        );
    }

    fn read_any(bytes: &[u8]) -> (Vec<(String, Item)>, Result<(), ReadError>) {
        let mut reader = open_any(io::Cursor::new(bytes.to_vec()), u64::MAX).expect("open");
        let mut out = Vec::new();
        loop {
            match reader.next_record() {
                Ok(Some(r)) => {
                    out.push((String::from_utf8(r.bytes.to_vec()).expect("utf8"), r.item))
                }
                Ok(None) => return (out, Ok(())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    #[test]
    fn any_shape_tells_envelopes_from_items() {
        let doc =
            br#"{"QueryStatus":"FINISHED","QueryResultRows":[[{"eventJson":"{}"}]],"NextToken":"t"}
{"Records":[{"n":1}]} {"Events":[{"CloudTrailEvent":"{}"}]}
{"eventVersion":"1.08","n":2}
[{"n":3},5]"#;
        let (items, end) = read_any(doc);
        end.expect("complete");
        let kinds: Vec<Item> = items.iter().map(|(_, k)| *k).collect();
        assert_eq!(
            kinds,
            vec![
                Item::LakeRow,
                Item::Record,
                Item::LookupEvent,
                Item::Unknown,
                Item::Unknown,
                Item::Unknown
            ]
        );
        assert_eq!(items[3].0, r#"{"eventVersion":"1.08","n":2}"#);
        assert_eq!(items[5].0, "5");
        let (_, end) = read_any(br#"{"QueryStatus":"FAILED"}"#);
        assert!(matches!(end, Err(ReadError::Shape { .. })), "{end:?}");
        let (_, end) = read_any(b"  \n");
        assert!(end.expect_err("empty").to_string().contains("empty"));
        // The log-file mode is unchanged: another object holds no records.
        let (records, end) = read_all(br#"{"Events":[{"n":1}]}"#.to_vec());
        assert!(records.is_empty());
        assert_eq!(end.expect("complete"), Finish::NoRecords);
    }

    #[test]
    fn records_larger_than_the_window() {
        let big = "b".repeat(CHUNK * 3 + 17);
        let doc = format!(r#"{{"Records":[{{"n":1}},{{"big":"{big}"}},{{"n":3}}]}}"#);
        let (records, end) = read_all(gzip(doc.as_bytes()));
        end.expect("complete");
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].len(), big.len() + 10);
    }
}
