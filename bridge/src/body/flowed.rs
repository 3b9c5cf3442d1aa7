//! format=flowed text (RFC 3676): unwrapped for XMPP, written for mail.

/// Unwraps format=flowed text (RFC 3676 §4): a line ending in a space
/// continues on the next line of the same quote depth. Quote depth is
/// kept as `> ` prefixes; space-stuffing is undone; the signature
/// separator `-- ` never flows.
pub fn unflow(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut paragraph: Option<(usize, String)> = None;
    let flush = |out: &mut String, paragraph: &mut Option<(usize, String)>| {
        if let Some((depth, line)) = paragraph.take() {
            if depth > 0 {
                out.push_str(&"> ".repeat(depth));
            }
            out.push_str(line.trim_end_matches(' '));
            out.push('\n');
        }
    };
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let depth = raw.chars().take_while(|c| *c == '>').count();
        let mut line = raw.get(depth..).unwrap_or_default();
        line = line.strip_prefix(' ').unwrap_or(line);
        let flowed = line.ends_with(' ') && line != "-- ";
        match &mut paragraph {
            Some((d, joined)) if *d == depth => joined.push_str(line),
            _ => {
                flush(&mut out, &mut paragraph);
                paragraph = Some((depth, line.to_owned()));
            }
        }
        if flowed {
            if delsp {
                if let Some((_, joined)) = &mut paragraph {
                    joined.pop();
                }
            }
        } else {
            flush(&mut out, &mut paragraph);
        }
    }
    flush(&mut out, &mut paragraph);
    out.trim_end_matches('\n').to_owned()
}

/// Longest line of flowed text, before its soft-break space (RFC 3676
/// recommends 78 including it).
const FLOW_WIDTH: usize = 76;

/// Encodes text as format=flowed (RFC 3676 §4.2): long lines are broken
/// at spaces with a trailing space (a soft break), lines that could be
/// mistaken for a soft break or a quote are space-stuffed, `> ` quote
/// prefixes are kept on every piece of a quoted line.
pub fn flow(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for line in text.split('\n') {
        let line = line
            .strip_suffix('\r')
            .unwrap_or(line)
            .trim_end_matches(' ');
        let depth = line.chars().take_while(|c| *c == '>').count();
        let quote = ">".repeat(depth);
        let mut rest = line.get(depth..).unwrap_or_default();
        if depth > 0 {
            rest = rest.strip_prefix(' ').unwrap_or(rest);
        }
        let prefix = if depth > 0 {
            format!("{quote} ")
        } else {
            String::new()
        };
        let stuff = |piece: &str| {
            depth == 0
                && (piece.starts_with(' ') || piece.starts_with("From ") || piece.starts_with('>'))
        };
        let width = FLOW_WIDTH.saturating_sub(prefix.len()).max(20);
        let mut pieces = Vec::new();
        while rest.len() > width {
            // Break after the last space that fits; an unbreakable word
            // stays whole.
            let cut = rest
                .char_indices()
                .take_while(|(i, _)| *i < width)
                .filter(|(_, c)| *c == ' ')
                .map(|(i, _)| i + 1)
                .last()
                .or_else(|| rest.find(' ').map(|i| i + 1));
            match cut {
                Some(cut) if cut < rest.len() => {
                    let (piece, tail) = rest.split_at(cut);
                    pieces.push(piece);
                    rest = tail;
                }
                _ => break,
            }
        }
        pieces.push(rest);
        for piece in pieces {
            out.push_str(&prefix);
            if stuff(piece) {
                out.push(' ');
            }
            out.push_str(piece);
            out.push_str("\r\n");
        }
    }
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}
