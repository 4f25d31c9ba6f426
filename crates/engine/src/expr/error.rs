//! Expression errors that point at the place in the text where they happened.

/// A syntax or compile error in a filter or segment expression. `position` is a byte offset
/// into the expression; `location` is what a person reads ("column 17", or "line 2, column 3"
/// when the expression spans lines).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("error at {location}: {message}")]
pub struct ExprError {
    pub position: usize,
    pub line: usize,
    pub column: usize,
    pub location: String,
    pub message: String,
    source_text: String,
}

impl ExprError {
    pub(crate) fn new(source: &str, position: usize, message: impl Into<String>) -> ExprError {
        let position = position.min(source.len());
        let before = &source[..position];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = source[line_start..position].chars().count() + 1;
        let location = if source.contains('\n') {
            format!("line {line}, column {column}")
        } else {
            format!("column {column}")
        };
        ExprError {
            position,
            line,
            column,
            location,
            message: message.into(),
            source_text: source.to_string(),
        }
    }

    /// The expression the error is about.
    pub fn source_text(&self) -> &str {
        &self.source_text
    }

    /// The message, the offending line of the expression and a caret under the position:
    ///
    /// ```text
    /// error at column 25: expected a value after '=', found end of input
    ///   channel = 'web' and os =
    ///                           ^
    /// ```
    pub fn render(&self) -> String {
        let text = self
            .source_text
            .lines()
            .nth(self.line - 1)
            .unwrap_or("")
            // A tab would shift the caret by a terminal-dependent width.
            .replace('\t', " ");
        format!(
            "{self}\n  {text}\n  {}^",
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = ExprError::new("os = 'é' x", 11, "boom");
        assert_eq!(e.column, 11);
        assert_eq!(e.to_string(), "error at column 11: boom");
    }

    #[test]
    fn multi_line_expressions_name_the_line() {
        let e = ExprError::new("a = 1\nand b", 10, "boom");
        assert_eq!((e.line, e.column), (2, 5));
        assert_eq!(
            e.render(),
            "error at line 2, column 5: boom\n  and b\n      ^"
        );
    }
}
