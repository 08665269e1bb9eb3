//! The words of a statement the source logged as text, for the few places
//! where the applier must know which statement it is or where a clause
//! starts. Not a parser: comments are skipped, quoted strings and quoted
//! identifiers are single tokens, and MySQL's versioned comments
//! (`/*!80000 … */`) count as code, as the server reads them.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An unquoted word (keyword, identifier or number), upper-cased.
    Word(String),
    /// A quoted string or identifier, as written.
    Quoted,
    /// One other character (`=`, `@`, `(`, `;`…).
    Punct(u8),
}

/// A token and where it stands in the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexeme {
    pub token: Token,
    pub span: Range<usize>,
}

impl Lexeme {
    pub fn is_word(&self, word: &str) -> bool {
        matches!(&self.token, Token::Word(w) if w == word)
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The statement's tokens, in order.
pub fn lex(sql: &[u8]) -> Vec<Lexeme> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_versioned = false;
    let at = |i: usize| sql.get(i).copied();
    while let Some(b) = at(i) {
        let start = i;
        match b {
            _ if b.is_ascii_whitespace() => i += 1,
            b'#' => i = line_end(sql, i),
            b'-' if at(i + 1) == Some(b'-') && at(i + 2).is_none_or(|c| c <= b' ') => {
                i = line_end(sql, i)
            }
            b'/' if at(i + 1) == Some(b'*') && matches!(at(i + 2), Some(b'!' | b'+')) => {
                // A versioned comment (or an optimizer hint): its text is code.
                in_versioned = true;
                i += 3;
                while at(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
            }
            b'/' if at(i + 1) == Some(b'*') => {
                i = find(sql, i + 2, b"*/").map_or(sql.len(), |e| e + 2);
            }
            b'*' if in_versioned && at(i + 1) == Some(b'/') => {
                in_versioned = false;
                i += 2;
            }
            b'\'' | b'"' | b'`' => {
                i = quoted_end(sql, i);
                out.push(Lexeme {
                    token: Token::Quoted,
                    span: start..i,
                });
            }
            _ if is_word_byte(b) => {
                while at(i).is_some_and(is_word_byte) {
                    i += 1;
                }
                let word = String::from_utf8_lossy(&sql[start..i]).to_ascii_uppercase();
                out.push(Lexeme {
                    token: Token::Word(word),
                    span: start..i,
                });
            }
            _ => {
                i += 1;
                out.push(Lexeme {
                    token: Token::Punct(b),
                    span: start..i,
                });
            }
        }
    }
    out
}

/// The first `n` tokens' words ("" for a token that is not a word).
pub fn leading_words(sql: &[u8], n: usize) -> Vec<String> {
    lex(sql)
        .into_iter()
        .take(n)
        .map(|l| match l.token {
            Token::Word(w) => w,
            _ => String::new(),
        })
        .collect()
}

fn line_end(sql: &[u8], from: usize) -> usize {
    find(sql, from, b"\n").map_or(sql.len(), |e| e + 1)
}

fn find(sql: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    sql.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// The end of the quoted token that starts at `start`: a doubled quote stays
/// inside, and so does a backslash-escaped one in strings.
fn quoted_end(sql: &[u8], start: usize) -> usize {
    let quote = sql[start];
    let mut i = start + 1;
    while let Some(&b) = sql.get(i) {
        if b == b'\\' && quote != b'`' {
            i += 2;
        } else if b == quote {
            if sql.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    sql.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_skipped_and_versioned_comments_are_code() {
        let sql = b"/* c */ CREATE -- x\n /*!50001 DEFINER=`a``b`@'l\\'h' */ # y\n EVENT e";
        let tokens: Vec<Token> = lex(sql).into_iter().map(|l| l.token).collect();
        assert_eq!(
            tokens,
            [
                Token::Word("CREATE".into()),
                Token::Word("DEFINER".into()),
                Token::Punct(b'='),
                Token::Quoted,
                Token::Punct(b'@'),
                Token::Quoted,
                Token::Word("EVENT".into()),
                Token::Word("E".into()),
            ]
        );
        assert_eq!(
            leading_words(b"  drop /* */ SCHEMA `s`", 3),
            ["DROP", "SCHEMA", ""]
        );
    }

    #[test]
    fn spans_point_into_the_statement() {
        let sql = b"ALTER EVENT `e` COMMENT 'it''s'";
        let lexemes = lex(sql);
        assert_eq!(&sql[lexemes[2].span.clone()], b"`e`");
        assert_eq!(&sql[lexemes[4].span.clone()], b"'it''s'");
    }
}
