//! Free text a client sends (product and customer names): trimmed, bounded, and free of
//! characters that could disguise what is shown (control characters, bidirectional overrides,
//! zero-width and other invisible formatting characters).

/// Why a piece of text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Nothing left after trimming.
    #[error("must not be empty")]
    Empty,
    /// Longer than allowed.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The limit, in characters.
        max: usize,
    },
    /// Holds a control, bidirectional or invisible formatting character.
    #[error("must not contain control, bidirectional or invisible characters (found U+{code:04X})")]
    Hidden {
        /// The offending character's code point.
        code: u32,
    },
}

/// Trims `text` and checks it as product and customer names are checked: not empty, at most
/// `max` characters, and free of control, bidirectional and invisible formatting characters.
/// For other free text a service takes from clients (a shipping address, ...).
pub fn clean(text: &str, max: usize) -> Result<String, TextError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(TextError::Empty);
    }
    if trimmed.chars().count() > max {
        return Err(TextError::TooLong { max });
    }
    if let Some(hidden) = trimmed.chars().find(|c| is_hidden(*c)) {
        return Err(TextError::Hidden {
            code: u32::from(hidden),
        });
    }
    Ok(trimmed.to_owned())
}

/// Control characters (Cc), line and paragraph separators, and the format characters (Cf) of
/// Unicode 15: bidirectional embeddings, overrides and isolates, zero-width characters, the
/// byte-order mark, interlinear annotations, tags and the like.
fn is_hidden(c: char) -> bool {
    const FORMAT: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x2028, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let code = u32::from(c);
    c.is_control()
        || FORMAT
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_keeps_ordinary_text() {
        assert_eq!(clean("  Medicine A ", 100).unwrap(), "Medicine A");
        assert_eq!(
            clean("Crème brûlée 寿司", 100).unwrap(),
            "Crème brûlée 寿司"
        );
    }

    #[test]
    fn refuses_empty_long_and_hidden_text() {
        assert_eq!(clean(" \t ", 10), Err(TextError::Empty));
        assert_eq!(clean("abcdef", 5), Err(TextError::TooLong { max: 5 }));
        for hidden in [
            '\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\u{7}', '\u{2028}',
        ] {
            let text = format!("Medicine{hidden}A");
            assert_eq!(
                clean(&text, 100),
                Err(TextError::Hidden {
                    code: u32::from(hidden)
                }),
                "{hidden:?}"
            );
        }
    }
}
