//! The rules of accounts, free of I/O: what a valid email, name and password
//! are, and how roles are written down.

mod email;
mod name;
mod password;
mod proxies;

pub use email::{Email, skeleton_of};
pub use name::DisplayName;
pub use password::{NewPassword, PasswordPolicy};
pub use proxies::TrustedProxies;

use emporium_auth::Role;

pub(crate) use emporium_http::text::{CONTROL, INVISIBLE, refuse_hidden};

/// Roles as stored: a comma-separated list in a fixed order.
pub fn roles_to_text(roles: &[Role]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for role in [Role::Customer, Role::Admin] {
        if roles.contains(&role) {
            out.push(role.as_str());
        }
    }
    out.join(",")
}

pub fn roles_from_text(text: &str) -> Vec<Role> {
    text.split(',')
        .filter_map(|r| match r.trim() {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_in_a_fixed_order() {
        let text = roles_to_text(&[Role::Admin, Role::Customer, Role::Admin]);
        assert_eq!(text, "customer,admin");
        assert_eq!(roles_from_text(&text), vec![Role::Customer, Role::Admin]);
        assert!(roles_from_text("").is_empty());
    }
}
