//! The access-log line written straight into the log buffer, byte for byte
//! what `tracing`'s fmt subscriber (ANSI colours off) writes for it, in
//! either format.
//!
//! Through `tracing` the line cost ~22 k instructions per request, 40 % of
//! the plain route's user-space work (`bench/instructions.sh`, logs on vs
//! off): each field goes through the subscriber's visitor, its colour
//! checks and an escaping writer, and the timestamp is computed from scratch.
//! Here the line is one `write!` into a thread-local buffer, and the date
//! is formatted once a second per thread. The binary turns it on
//! ([`write_directly`]); a library embedder's own subscriber still gets
//! the `tracing` event.

use crate::observe::log_writer::BatchedWriter;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The two line formats of `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// `tracing`'s default (`Full`) format without colours.
    Text,
    /// `tracing`'s JSON format.
    Json,
}

/// Where access lines go when they skip `tracing`, and in which format.
struct DirectLog {
    writer: BatchedWriter,
    format: LineFormat,
}

static DIRECT: OnceLock<DirectLog> = OnceLock::new();

/// Makes access lines go straight to `writer` (the one the process's fmt
/// subscriber writes to) in `format`. `RUST_LOG` still decides whether
/// they are written (by target and level). Only for a subscriber without
/// ANSI colours, whose lines these are byte for byte; call it once.
pub fn write_directly(writer: BatchedWriter, format: LineFormat) {
    let _ = DIRECT.set(DirectLog { writer, format });
}

/// The fields of one access line.
pub(crate) struct Line<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub upstream: &'a str,
    pub upstream_target: Option<SocketAddr>,
    pub answered_by: &'a str,
    pub plugin: &'a str,
    pub client: &'a str,
    pub request_id: &'a str,
    pub trace_id: u128,
}

/// Writes `line` if [`write_directly`] was called; false if it was not
/// and the caller should emit the `tracing` event instead.
pub(crate) fn write(line: &Line<'_>) -> bool {
    let Some(direct) = DIRECT.get() else {
        return false;
    };
    thread_local! {
        static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
    }
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        format(buffer, line, direct.format, SystemTime::now());
        direct.writer.append(buffer);
    });
    true
}

/// Appends `line` stamped `now` to `out` in `format`, newline included.
pub(crate) fn format(out: &mut Vec<u8>, line: &Line<'_>, format: LineFormat, now: SystemTime) {
    let target = super::access_log::TARGET;
    match format {
        LineFormat::Text => {
            push_timestamp(out, now);
            let _ = write!(out, "  INFO {target}: {} ", line.method);
            push_sanitized(out, line.path);
            let _ = writeln!(
                out,
                " {status} route={:?} method={} path={:?} status={status} duration_ms={:?} upstream={:?} upstream_target={} answered_by={:?} plugin={:?} client={} request_id={:?} trace_id={:032x}",
                line.route,
                line.method,
                line.path,
                line.duration_ms,
                line.upstream,
                OptionalAddress(line.upstream_target),
                line.answered_by,
                line.plugin,
                line.client,
                line.request_id,
                line.trace_id,
                status = line.status,
            );
        }
        LineFormat::Json => {
            out.extend_from_slice(b"{\"timestamp\":\"");
            push_timestamp(out, now);
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":");
            push_json(
                out,
                &format!("{} {} {}", line.method, line.path, line.status),
            );
            for (name, value) in [
                ("route", line.route),
                ("method", line.method),
                ("path", line.path),
            ] {
                let _ = write!(out, ",\"{name}\":");
                push_json(out, value);
            }
            let _ = write!(out, ",\"status\":{},\"duration_ms\":", line.status);
            push_json(out, &line.duration_ms);
            out.extend_from_slice(b",\"upstream\":");
            push_json(out, line.upstream);
            out.extend_from_slice(b",\"upstream_target\":");
            push_json(out, &OptionalAddress(line.upstream_target).to_string());
            for (name, value) in [
                ("answered_by", line.answered_by),
                ("plugin", line.plugin),
                ("client", line.client),
                ("request_id", line.request_id),
            ] {
                let _ = write!(out, ",\"{name}\":");
                push_json(out, value);
            }
            let _ = writeln!(
                out,
                ",\"trace_id\":\"{:032x}\"}},\"target\":\"{target}\"}}",
                line.trace_id
            );
        }
    }
}

/// `value` as JSON, escaped as serde_json escapes it.
fn push_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, value);
}

/// `text` with the terminal control characters `tracing` escapes in a
/// message (ESC, BEL, BS, FF, DEL and the C1 range) escaped the same way.
fn push_sanitized(out: &mut Vec<u8>, text: &str) {
    let is_control = |c: char| {
        matches!(
            c,
            '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
        )
    };
    if !text.contains(is_control) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut buffer = [0; 4];
    for c in text.chars() {
        match c {
            '\u{80}'..='\u{9f}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c if is_control(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes()),
        }
    }
}

/// `2026-12-07T18:11:16.343354Z`, as `tracing`'s default timer writes it;
/// the part up to the seconds is formatted once a second per thread.
fn push_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != seconds {
            *cached = seconds;
            text.clear();
            let at = i64::try_from(seconds)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let _ = write!(
                text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            );
        }
        out.extend_from_slice(text.as_bytes());
    });
    let _ = write!(out, ".{:06}Z", since_epoch.subsec_micros());
}

/// An address, or nothing, written without allocating.
pub(crate) struct OptionalAddress(pub Option<SocketAddr>);

impl std::fmt::Display for OptionalAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `tracing`'s fmt subscriber, colours off, writes for the event.
    fn through_tracing(line: &Line<'_>, format: LineFormat) -> String {
        let capture = Capture::default();
        let sink = capture.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone());
        let dispatch = match format {
            LineFormat::Text => tracing::Dispatch::new(builder.finish()),
            LineFormat::Json => tracing::Dispatch::new(builder.json().finish()),
        };
        tracing::dispatcher::with_default(&dispatch, || super::super::access_log::emit(line));
        let bytes = capture.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn direct(line: &Line<'_>, format: LineFormat) -> String {
        let mut out = Vec::new();
        super::format(&mut out, line, format, SystemTime::now());
        String::from_utf8(out).unwrap()
    }

    /// The line with its 27-character timestamp (where `format` puts it)
    /// replaced by its shape: digits as `0`.
    fn unstamped(text: &str, format: LineFormat) -> String {
        let at = match format {
            LineFormat::Text => 0,
            LineFormat::Json => "{\"timestamp\":\"".len(),
        };
        let stamp: String = text[at..at + 27]
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect();
        format!("{}{stamp}{}", &text[..at], &text[at + 27..])
    }

    fn lines() -> Vec<Line<'static>> {
        let typical = Line {
            route: "bare",
            method: "GET",
            path: "/bare/x",
            status: 200,
            duration_ms: 0.689384,
            upstream: "echo",
            upstream_target: Some("127.0.0.1:19301".parse().unwrap()),
            answered_by: "upstream",
            plugin: "",
            client: "127.0.0.1:46668",
            request_id: "a93cd7aa-931b-4c33-be87-a5300a9a4c23",
            trace_id: 0xc49f3baed7b944eeb44efe797b50a257,
        };
        vec![
            Line {
                route: "_unmatched",
                status: 404,
                duration_ms: 0.06960400000000001,
                upstream: "",
                upstream_target: None,
                answered_by: "gateway",
                trace_id: 7,
                ..typical
            },
            Line {
                method: "PURGE",
                path: "/a\"b\\c\x1bd\u{85}e\u{e9}\x7f",
                status: 500,
                duration_ms: 1.0,
                upstream_target: Some("[::1]:8080".parse().unwrap()),
                answered_by: "plugin_fault",
                plugin: "api-key",
                client: "[::1]:50000",
                request_id: "client \"chosen\"\t\u{1b}[31m",
                ..typical
            },
            Line {
                duration_ms: 12345.678,
                ..typical
            },
            typical,
        ]
    }

    #[test]
    fn a_direct_line_is_the_line_tracing_writes_in_both_formats() {
        for format in [LineFormat::Text, LineFormat::Json] {
            for line in lines() {
                let expected = unstamped(&through_tracing(&line, format), format);
                let written = unstamped(&direct(&line, format), format);
                assert_eq!(written, expected, "{format:?}");
            }
        }
    }

    #[test]
    fn the_timestamp_is_utc_to_the_microsecond() {
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_042);
        let mut out = Vec::new();
        push_timestamp(&mut out, at);
        push_timestamp(&mut out, at + Duration::from_millis(1500));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2023-11-14T22:13:20.000042Z2023-11-14T22:13:21.500042Z",
            "the cached second moves on"
        );
    }
}
