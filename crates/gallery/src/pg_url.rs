//! PostgreSQL URLs: parsed for the driver, and printed without their password.

use tokio_postgres::Config;

use crate::{Error, Invalid, Result};

/// Parses a `postgres://` URL, saying what is wrong without showing the password.
pub(crate) fn parse_url(url: &str) -> Result<Config> {
    url.parse::<Config>().map_err(|e| Error::Invalid(Invalid::Url { url: redacted(url), reason: e.to_string() }))
}

/// A URL with its password replaced by `***`.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}
