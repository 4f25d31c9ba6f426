//! Tokens of the expression language, each with the byte offset where it starts.

use super::ast::CmpOp;
use super::ExprError;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// A bare word: a field, a keyword (keywords are matched case-insensitively by the parser).
    Word(String),
    /// A quoted string, escapes resolved.
    Str(String),
    /// A number as written and its value.
    Num(f64, String),
    /// Digits glued to letters, such as `7d`: a duration when the parser expects one.
    NumUnit(String, String),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    Dot,
    End,
}

impl Tok {
    /// How an error message names the token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Num(_, text) => format!("number {text}"),
            Tok::NumUnit(n, u) => format!("'{n}{u}'"),
            Tok::Op(op) => format!("'{}'", op.symbol()),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Dot => "'.'".into(),
            Tok::End => "end of input".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub at: usize,
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ExprError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, msg: String| ExprError::new(src, at, msg);
    while i < b.len() {
        let c = src[i..].chars().next().expect("i is on a char boundary");
        let at = i;
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let next = b.get(i + 1).copied();
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '.' if !next.is_some_and(|n| n.is_ascii_digit()) => Tok::Dot,
            '=' => {
                // `==` reads as `=` for people used to C-like languages.
                if next == Some(b'=') {
                    i += 1;
                }
                Tok::Op(CmpOp::Eq)
            }
            '!' if next == Some(b'=') => {
                i += 1;
                Tok::Op(CmpOp::Ne)
            }
            '<' if next == Some(b'=') => {
                i += 1;
                Tok::Op(CmpOp::Le)
            }
            '<' if next == Some(b'>') => {
                i += 1;
                Tok::Op(CmpOp::Ne)
            }
            '<' => Tok::Op(CmpOp::Lt),
            '>' if next == Some(b'=') => {
                i += 1;
                Tok::Op(CmpOp::Ge)
            }
            '>' => Tok::Op(CmpOp::Gt),
            '\'' | '"' => {
                let (s, end) = string(src, i, c)?;
                out.push(Token {
                    tok: Tok::Str(s),
                    at,
                });
                i = end;
                continue;
            }
            '0'..='9' | '.' | '-' => {
                let (tok, end) = number(src, i)?;
                out.push(Token { tok, at });
                i = end;
                continue;
            }
            c if is_word_start(c) => {
                let end = src[i..]
                    .find(|c: char| !is_word_char(c))
                    .map_or(src.len(), |n| i + n);
                out.push(Token {
                    tok: Tok::Word(src[i..end].to_string()),
                    at,
                });
                i = end;
                continue;
            }
            '&' => return Err(err(at, "unexpected '&': write 'and'".into())),
            '|' => return Err(err(at, "unexpected '|': write 'or'".into())),
            '!' => return Err(err(at, "unexpected '!': write 'not' (or '!=')".into())),
            other => return Err(err(at, format!("unexpected character '{other}'"))),
        };
        i += c.len_utf8();
        out.push(Token { tok, at });
    }
    out.push(Token {
        tok: Tok::End,
        at: src.len(),
    });
    Ok(out)
}

/// A quoted string starting at `start`; returns the text and the offset after the closing quote.
fn string(src: &str, start: usize, quote: char) -> Result<(String, usize), ExprError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        let at = start + 1 + k;
        if c == quote {
            return Ok((out, at + 1));
        }
        if c == '\\' {
            match chars.next() {
                Some((_, e @ ('\\' | '\'' | '"'))) => out.push(e),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, e)) => {
                    return Err(ExprError::new(
                        src,
                        at,
                        format!("unknown escape '\\{e}' (use \\\\, \\', \\\", \\n or \\t)"),
                    ))
                }
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err(ExprError::new(
        src,
        start,
        format!("unterminated string: no closing {quote} after this quote"),
    ))
}

/// A number (`-1`, `2.5`, `.5`, `1e3`) or digits glued to a unit (`7d`).
fn number(src: &str, start: usize) -> Result<(Tok, usize), ExprError> {
    let b = src.as_bytes();
    let mut i = start;
    if b[i] == b'-' {
        i += 1;
    }
    let digits_from = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    let mantissa = &src[digits_from..i];
    if !mantissa.bytes().any(|c| c.is_ascii_digit()) {
        let what = if b[start] == b'-' {
            "'-' must be followed by a number"
        } else {
            "expected digits"
        };
        return Err(ExprError::new(src, start, what));
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut k = i + 1;
        if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
            k += 1;
        }
        if k < b.len() && b[k].is_ascii_digit() {
            while k < b.len() && b[k].is_ascii_digit() {
                k += 1;
            }
            i = k;
        }
    }
    let text = &src[start..i];
    let unit_end = src[i..]
        .find(|c: char| !is_word_char(c))
        .map_or(src.len(), |n| i + n);
    if unit_end > i {
        return Ok((
            Tok::NumUnit(text.to_string(), src[i..unit_end].to_string()),
            unit_end,
        ));
    }
    let value: f64 = text
        .parse()
        .map_err(|_| ExprError::new(src, start, format!("'{text}' is not a number")))?;
    if !value.is_finite() {
        return Err(ExprError::new(
            src,
            start,
            format!("number {text} is out of range"),
        ));
    }
    Ok((Tok::Num(value, text.to_string()), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn operators_strings_and_numbers() {
        assert_eq!(
            toks("a<=-1.5 or b=='x\\'y' <> \"q\" 7d 1e3"),
            vec![
                Tok::Word("a".into()),
                Tok::Op(CmpOp::Le),
                Tok::Num(-1.5, "-1.5".into()),
                Tok::Word("or".into()),
                Tok::Word("b".into()),
                Tok::Op(CmpOp::Eq),
                Tok::Str("x'y".into()),
                Tok::Op(CmpOp::Ne),
                Tok::Str("q".into()),
                Tok::NumUnit("7".into(), "d".into()),
                Tok::Num(1000.0, "1e3".into()),
                Tok::End,
            ]
        );
    }

    #[test]
    fn dots_split_words_but_start_fractions() {
        assert_eq!(
            toks("property.os .5"),
            vec![
                Tok::Word("property".into()),
                Tok::Dot,
                Tok::Word("os".into()),
                Tok::Num(0.5, ".5".into()),
                Tok::End,
            ]
        );
    }

    #[test]
    fn lexical_errors_point_at_the_culprit() {
        let e = tokenize("a = 'abc").unwrap_err();
        assert_eq!(e.column, 5);
        assert!(e.message.contains("unterminated string"), "{}", e.message);
        assert_eq!(tokenize("a && b").unwrap_err().column, 3);
        assert_eq!(tokenize("a = -x").unwrap_err().column, 5);
        assert!(tokenize("a = 'x\\q'")
            .unwrap_err()
            .message
            .contains("escape"));
    }
}
