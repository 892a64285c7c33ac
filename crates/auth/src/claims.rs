//! Token claims.

use serde::{Deserialize, Serialize};

/// What a token may be used for. A token of one type is refused where another is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// A person's short-lived access token.
    Access,
    /// A service client's token from the client-credentials grant.
    Service,
}

/// A person's role in the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
}

/// The claims of every token the accounts service signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id, or the service client id.
    pub sub: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    /// Access or service; named `token_type` so no other JWT's `typ` is mistaken for it.
    pub token_type: TokenType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// The refresh-token family (the login session) an access token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The account's token generation when the token was issued: a change
    /// that must end the user's tokens (roles, disabling, password) raises it,
    /// and services refuse tokens of an older generation.
    #[serde(rename = "gen", default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Space-separated scopes of a service token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Claims {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|granted| granted == scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_whole_words() {
        let c = Claims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "orders".into(),
            exp: 0,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            token_type: TokenType::Service,
            roles: vec![],
            sid: None,
            generation: None,
            scope: Some("stock:reserve payments:authorize".into()),
        };
        assert!(c.has_scope("stock:reserve"));
        assert!(!c.has_scope("stock"));
        assert!(!c.has_role(Role::Admin));
    }
}
