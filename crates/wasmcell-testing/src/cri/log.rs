//! CRI container log files (`<RFC 3339 timestamp> <stream> <P|F> <content>` per line, as
//! containerd's CRI plugin writes them and kubelet reads them): [`parse_cri_log`] and
//! [`cri_log_text`].

/// One line of a CRI container log file: `<RFC 3339 timestamp> <stream> <P|F> <content>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLogLine {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub timestamp: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// `P`: a partial line continued by the next one of the stream; `F`: a full (last) part.
    pub partial: bool,
    /// The text, without the newline.
    pub content: String,
}

/// Parse a CRI container log file (the format containerd's CRI plugin writes and kubelet reads).
///
/// # Errors
/// On the first line that is not in that format; the message quotes it.
pub fn parse_cri_log(text: &str) -> Result<Vec<CriLogLine>, String> {
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let bad = |why: &str| format!("CRI log line {}: {why}: {line:?}", n + 1);
            let mut parts = line.splitn(4, ' ');
            let timestamp = parts.next().unwrap_or_default();
            let stream = parts.next().ok_or_else(|| bad("no stream"))?;
            let tag = parts.next().ok_or_else(|| bad("no tag"))?;
            let content = parts.next().unwrap_or_default();
            if !is_rfc3339(timestamp) {
                return Err(bad("the timestamp is not RFC 3339"));
            }
            if stream != "stdout" && stream != "stderr" {
                return Err(bad("the stream is neither stdout nor stderr"));
            }
            let partial = match tag {
                "P" => true,
                "F" => false,
                _ => return Err(bad("the tag is neither P nor F")),
            };
            Ok(CriLogLine {
                timestamp: timestamp.into(),
                stream: stream.into(),
                partial,
                content: content.into(),
            })
        })
        .collect()
}

/// The text of one stream of a parsed CRI log: partial lines joined, each full line ending in
/// a newline.
pub fn cri_log_text(lines: &[CriLogLine], stream: &str) -> String {
    let mut out = String::new();
    for line in lines.iter().filter(|l| l.stream == stream) {
        out.push_str(&line.content);
        if !line.partial {
            out.push('\n');
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.len() == r.len() && d.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), Some(b'T' | b't'))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            digits(i + 1..i + 3)
                && b.get(i + 3) == Some(&b':')
                && digits(i + 4..i + 6)
                && i + 6 == b.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_logs_are_parsed() {
        let text = "2024-05-01T10:00:00.123456789Z stdout F Hello from a wasmcell guest!\n\
                    2024-05-01T10:00:00.2+02:00 stderr P part \n\
                    2024-05-01T10:00:01Z stderr F two\n\
                    2024-05-01T10:00:01Z stdout F \n";
        let lines = parse_cri_log(text).expect("valid log");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].content, "Hello from a wasmcell guest!");
        assert!(lines[1].partial);
        assert_eq!(
            cri_log_text(&lines, "stdout"),
            "Hello from a wasmcell guest!\n\n"
        );
        assert_eq!(cri_log_text(&lines, "stderr"), "part two\n");
    }

    #[test]
    fn bad_cri_log_lines_are_refused() {
        for bad in [
            "Hello",
            "2024-05-01 stdout F x",
            "2024-05-01T10:00:00Z stdin F x",
            "2024-05-01T10:00:00Z stdout X x",
            "2024-05-01T10:00:00.Z stdout F x",
            "2024-05-01T10:00:00+0200 stdout F x",
        ] {
            assert!(parse_cri_log(bad).is_err(), "{bad:?} accepted");
        }
    }
}
