//! Text rules every service applies to what people type: no characters that
//! hide or disguise what a string says (controls, zero-width and other
//! invisible characters, bidirectional text controls).

/// Refusals shared by the text rules.
pub const CONTROL: &str = "must not contain control characters";
pub const INVISIBLE: &str = "must not contain invisible characters such as zero-width spaces";
pub const BIDI: &str = "must not contain bidirectional text controls";

/// Characters that show as nothing, so that two different strings look alike:
/// zero-width spaces and joiners, the byte-order mark, soft hyphens, fillers,
/// invisible operators and tags.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' // soft hyphen
        | '\u{034F}' // combining grapheme joiner
        | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers
        | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
        | '\u{180E}' // Mongolian vowel separator
        | '\u{200B}'..='\u{200D}' // zero-width space, non-joiner, joiner
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{206A}'..='\u{206F}' // deprecated format characters
        | '\u{FEFF}' // zero-width no-break space (byte-order mark)
        | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        | '\u{1D173}'..='\u{1D17A}' // musical formatting
        | '\u{E0000}'..='\u{E007F}' // tags
        | '\u{2800}' // braille blank
        | '\u{FFFC}' // object replacement
        | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
        | '\u{E000}'..='\u{F8FF}' // private use: no agreed look
        | '\u{F0000}'..='\u{10FFFF}' // supplementary private use
        | '\u{FDD0}'..='\u{FDEF}' // noncharacters
    )
}

/// Characters that change the direction text is shown in, so that what is shown
/// is not what is stored (`\u{202E}` shows `moc.elpmaxe@` as `@example.com`).
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' // Arabic letter mark
        | '\u{200E}' | '\u{200F}' // left-to-right and right-to-left marks
        | '\u{202A}'..='\u{202E}' // embeddings and overrides
        | '\u{2066}'..='\u{2069}' // isolates
    )
}

/// The first refusal that applies to any character of `text`, in the order
/// control, invisible, bidirectional.
pub fn refuse_hidden(text: &str) -> Result<(), &'static str> {
    // Line and paragraph separators break a one-line text like a newline does.
    if text
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(CONTROL);
    }
    if text.chars().any(is_invisible) {
        return Err(INVISIBLE);
    }
    if text.chars().any(is_bidi_control) {
        return Err(BIDI);
    }
    Ok(())
}

/// For multi-line text (descriptions): as [`refuse_hidden`], but line breaks
/// and tabs are allowed, and so are zero-width joiners (emoji sequences).
pub fn refuse_hidden_in_prose(text: &str) -> Result<(), &'static str> {
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(CONTROL);
    }
    if text.chars().any(|c| is_invisible(c) && c != '\u{200D}') {
        return Err(INVISIBLE);
    }
    if text.chars().any(is_bidi_control) {
        return Err(BIDI);
    }
    Ok(())
}

/// Whether a one-line name shows anything: not empty once invisible
/// characters and white space are set aside.
pub fn shows_something(text: &str) -> bool {
    text.chars().any(|c| !c.is_whitespace() && !is_invisible(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_refused_by_kind() {
        for (text, want) in [
            ("plain text", Ok(())),
            ("Zoë 李 ❤", Ok(())),
            ("a\u{0}b", Err(CONTROL)),
            ("a\u{7f}b", Err(CONTROL)),
            ("a\u{85}b", Err(CONTROL)),
            ("a\nb", Err(CONTROL)),
            ("a\u{200B}b", Err(INVISIBLE)),
            ("a\u{200C}b", Err(INVISIBLE)),
            ("a\u{200D}b", Err(INVISIBLE)),
            ("a\u{2060}b", Err(INVISIBLE)),
            ("a\u{FEFF}b", Err(INVISIBLE)),
            ("a\u{180E}b", Err(INVISIBLE)),
            ("a\u{00AD}b", Err(INVISIBLE)),
            ("a\u{3164}b", Err(INVISIBLE)),
            ("a\u{E0041}b", Err(INVISIBLE)),
            ("a\u{202A}b", Err(BIDI)),
            ("a\u{202E}b", Err(BIDI)),
            ("a\u{2066}b", Err(BIDI)),
            ("a\u{2069}b", Err(BIDI)),
            ("a\u{200E}b", Err(BIDI)),
            ("a\u{200F}b", Err(BIDI)),
            ("a\u{061C}b", Err(BIDI)),
            // Control first, whatever else is there.
            ("\u{202E}\u{200B}\u{1}", Err(CONTROL)),
        ] {
            assert_eq!(refuse_hidden(text), want, "{text:?}");
        }
    }

    #[test]
    fn prose_keeps_line_breaks_and_names_show_something() {
        assert_eq!(refuse_hidden_in_prose("Line one\nline\ttwo"), Ok(()));
        assert_eq!(refuse_hidden_in_prose("bell\u{7}"), Err(CONTROL));
        assert_eq!(refuse_hidden_in_prose("\u{1b}[31mred"), Err(CONTROL));
        assert_eq!(refuse_hidden_in_prose("x\u{2066}y"), Err(BIDI));
        assert_eq!(refuse_hidden_in_prose("zero\u{200B}width"), Err(INVISIBLE));
        assert_eq!(
            refuse_hidden_in_prose("family \u{1F468}\u{200D}\u{1F469}"),
            Ok(())
        );
        assert_eq!(refuse_hidden("line\u{2028}separator"), Err(CONTROL));
        assert!(!shows_something(" \u{200B} "));
        assert!(!shows_something("\u{2800}"));
        assert!(shows_something("a"));
    }
}
