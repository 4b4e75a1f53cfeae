//! Bearer tokens for TCP callers: the tokens file (`NAME ROLE SHA256-HEX-OF-THE-SECRET` per line,
//! `#` starts a comment), the check of a presented secret against it, and the making of a new
//! token. The file holds only hashes, so reading it reveals no secret; a presented secret is
//! hashed and compared with every entry in constant time, so the time taken says nothing about
//! how close a guess was. The caller adds a fixed delay before refusing an unknown token.
use std::fmt::Write as _;
use std::path::Path;

use subtle::ConstantTimeEq;

use super::Role;

/// One token: its name (in the audit trail), its role, and the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    hash: [u8; 32],
}

/// The tokens of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    tokens: Vec<Token>,
}

/// Why a tokens file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("tokens file {path}: line {line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Parse a tokens file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Tokens, TokensError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| TokensError::Invalid {
                path: path.to_string(),
                line: i + 1,
                message,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(bad(format!(
                    "expected NAME ROLE SHA256-HEX, got {} field(s)",
                    fields.len()
                )));
            };
            let role = Role::parse(role).ok_or_else(|| {
                bad(format!(
                    "role {role:?} is not one of viewer, operator, admin"
                ))
            })?;
            let hash = unhex(hash).ok_or_else(|| {
                bad("the hash is not 64 hex digits (the SHA-256 of the secret)".into())
            })?;
            if tokens.iter().any(|t| t.name == name) {
                return Err(bad(format!("token name {name:?} appears twice")));
            }
            tokens.push(Token {
                name: name.to_string(),
                role,
                hash,
            });
        }
        Ok(Tokens { tokens })
    }

    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: shown.clone(),
            source,
        })?;
        Tokens::parse(&text, &shown)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token whose secret this is. Every entry is compared, in constant time, whether or not
    /// an earlier one matched.
    pub fn verify(&self, secret: &str) -> Option<&Token> {
        let presented = sha256(secret.as_bytes());
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.hash.ct_eq(&presented)) {
                found = Some(t);
            }
        }
        found
    }
}

/// A new token: (the secret, the line for the tokens file). The secret is 32 random bytes in hex
/// with a `wf_` prefix, so it is recognisable in a leak scan.
pub fn create(name: &str, role: Role) -> Result<(String, String), String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(format!("token name {name:?} is empty or has spaces or '#'"));
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "the system's random source failed".to_string())?;
    let secret = format!("wf_{}", hex(&bytes));
    let line = format!("{name} {role} {}", hex(&sha256(secret.as_bytes())));
    Ok((secret, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_verifies_and_others_do_not() {
        let (secret, line) = create("ci-bot", Role::Operator).expect("create");
        assert!(secret.starts_with("wf_") && secret.len() == 67, "{secret}");
        assert!(line.starts_with("ci-bot operator "), "{line}");
        assert!(!line.contains(&secret[3..]), "the line holds no secret");
        let text = format!(
            "# tokens\n\n{line}   # the CI\nviewer1 viewer {}\n",
            "ab".repeat(32)
        );
        let tokens = Tokens::parse(&text, "t").expect("parses");
        assert_eq!(tokens.len(), 2);
        let t = tokens.verify(&secret).expect("known");
        assert_eq!((t.name.as_str(), t.role), ("ci-bot", Role::Operator));
        assert!(tokens.verify("wf_wrong").is_none());
        assert!(tokens.verify("").is_none());
        let (other, _) = create("ci-bot", Role::Operator).expect("create");
        assert_ne!(other, secret, "secrets are random");
        assert!(create("two words", Role::Admin).is_err());
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = Tokens::parse("a admin\n", "/etc/t").expect_err("two fields");
        assert_eq!(
            e.to_string(),
            "tokens file /etc/t: line 1: expected NAME ROLE SHA256-HEX, got 2 field(s)"
        );
        let e = Tokens::parse(&format!("\na root {}\n", "00".repeat(32)), "t").expect_err("role");
        assert!(e.to_string().contains("line 2: role \"root\""), "{e}");
        let e = Tokens::parse("a admin 1234\n", "t").expect_err("hash");
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        let h = "0f".repeat(32);
        let e = Tokens::parse(&format!("a admin {h}\na viewer {h}\n"), "t").expect_err("twice");
        assert!(e.to_string().contains("appears twice"), "{e}");
        assert!(Tokens::parse("", "t").expect("empty is fine").is_empty());
    }
}
