//! Which proxy, if any, each request goes through: the one place that
//! decides it, for the registry API, token endpoints and redirects to blob
//! storage alike.
//!
//! A [`Proxy`] is built from an explicit URL ([`Proxy::all`],
//! [`Proxy::from_setting`]) or from the environment as curl reads it
//! ([`Proxy::from_env`]): `http_proxy` for `http://` URLs, `https_proxy`
//! for `https://` ones, `all_proxy` for either, and `no_proxy` for the
//! hosts reached directly, each lower-case first, then upper-case.
//! Requests to `https://` registries go through a `CONNECT` tunnel;
//! requests to plain-HTTP registries are forwarded, each on a connection of
//! its own (a proxy may close a connection after any answer without saying
//! so, and a streamed upload cannot be sent twice).
//!
//! A proxy's password is never shown: [`ProxyUrl`]'s `Display` and `Debug`
//! print `http://user:***@host:port`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use url::{Host, Url};

use crate::error::Error;

/// A proxy's address: `http://[USER:PASSWORD@]HOST:PORT` or `https://…`
/// (TLS to the proxy itself). Printed without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(Url);

impl ProxyUrl {
    /// Parse a proxy URL. Without a scheme, `http://` is meant (as curl
    /// reads it); without a port, 80 for `http://` and 443 for `https://`.
    /// The user and password may be percent-encoded.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for what is not an `http://` or `https://` URL
    /// with a host; the message shows the input with its password hidden.
    pub fn parse(input: &str) -> Result<ProxyUrl, Error> {
        let text = input.trim();
        let shown = redact_text(text);
        let fail = |reason: String| Error::config(format!("proxy {shown:?}"), reason);
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| fail(format!("not a URL: {e}")))?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(fail(format!(
                    "{other}:// proxies are not supported: give an http:// or https:// proxy"
                )))
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(fail("no host".into()));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(fail(
                "a proxy URL has no path: give scheme://[user:password@]host:port".into(),
            ));
        }
        Ok(ProxyUrl(url))
    }

    /// The URL with its credentials, for the HTTP client that connects to
    /// the proxy. Never print it: print the `ProxyUrl` itself.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// Whether the URL carries a user name or password.
    pub fn has_credentials(&self) -> bool {
        !self.0.username().is_empty() || self.0.password().is_some()
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = &self.0;
        write!(f, "{}://", u.scheme())?;
        if !u.username().is_empty() {
            f.write_str(u.username())?;
        }
        if u.password().is_some() {
            f.write_str(":***")?;
        }
        if self.has_credentials() {
            f.write_str("@")?;
        }
        f.write_str(u.host_str().unwrap_or_default())?;
        match u.port() {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

/// Text that may hold `scheme://user:password@host`, with the password
/// hidden (for messages about a URL that did not parse).
fn redact_text(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, text),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            let hidden = if rest[..at].contains(':') { ":***" } else { "" };
            format!("{user}{hidden}{}", &rest[at..])
        }
        None => rest.to_string(),
    };
    match scheme {
        Some(s) => format!("{s}://{rest}"),
        None => rest,
    }
}

/// The hosts reached directly, as curl reads `NO_PROXY`: a comma- (or
/// space-) separated list of
///
/// - `*`: every host;
/// - a name, with or without a leading dot: that host and every host under
///   it (`example.com` and `.example.com` both match `example.com` and
///   `a.example.com`, not `badexample.com`);
/// - an IP address (`10.1.2.3`, `::1`, `[::1]`) or a network in CIDR
///   notation (`10.0.0.0/8`, `fd00::/8`), matching hosts written as IP
///   addresses (names are not resolved);
/// - any of these with `:PORT`, matching that port only.
///
/// Names are compared without case and without a trailing dot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<Bypass>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Bypass {
    Name {
        name: String,
        port: Option<u16>,
    },
    Net {
        ip: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
}

impl NoProxy {
    /// Parse a `NO_PROXY` list. Never fails: an entry that is not an
    /// address is a host name, as curl takes it.
    pub fn parse(list: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in list.split([',', ' ', '\t', '\n']).map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                out.all = true;
                continue;
            }
            out.entries.push(parse_bypass(entry));
        }
        out
    }

    /// `no_proxy`, else `NO_PROXY`, from the environment (empty when
    /// neither is set).
    pub fn from_env() -> NoProxy {
        NoProxy::parse(&env_var(|n| std::env::var(n).ok(), "no_proxy").unwrap_or_default())
    }

    /// Whether a request to `url` goes direct.
    pub fn matches(&self, url: &Url) -> bool {
        if self.all {
            return true;
        }
        let Some(host) = url.host() else {
            return false;
        };
        let port = url.port_or_known_default();
        self.entries.iter().any(|b| b.matches(&host, port))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        !self.all && self.entries.is_empty()
    }
}

fn parse_bypass(entry: &str) -> Bypass {
    // `[v6]` or `[v6]:port`.
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some((addr, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            if let Some(b) = net(addr, port) {
                return b;
            }
        }
    }
    if let Some(b) = net(entry, None) {
        return b;
    }
    // `host:port` (an IPv6 address without brackets parsed above).
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            (h, p.parse().ok())
        }
        _ => (entry, None),
    };
    if let Some(b) = net(host, port) {
        return b;
    }
    let name = host
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    Bypass::Name { name, port }
}

/// An address or `address/prefix`.
fn net(text: &str, port: Option<u16>) -> Option<Bypass> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (text, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some(Bypass::Net { ip, prefix, port })
}

impl Bypass {
    fn matches(&self, host: &Host<&str>, port: Option<u16>) -> bool {
        let port_ok = |want: &Option<u16>| want.is_none() || *want == port;
        match (self, host) {
            (Bypass::Name { name, port: want }, Host::Domain(h)) => {
                let h = h.trim_end_matches('.').to_ascii_lowercase();
                port_ok(want)
                    && (h == *name
                        || (h.len() > name.len()
                            && h.ends_with(name.as_str())
                            && h.as_bytes()[h.len() - name.len() - 1] == b'.'))
            }
            (
                Bypass::Net {
                    ip,
                    prefix,
                    port: want,
                },
                Host::Ipv4(a),
            ) => port_ok(want) && in_net(IpAddr::V4(*a), *ip, *prefix),
            (
                Bypass::Net {
                    ip,
                    prefix,
                    port: want,
                },
                Host::Ipv6(a),
            ) => port_ok(want) && in_net(IpAddr::V6(*a), *ip, *prefix),
            _ => false,
        }
    }
}

fn in_net(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Which proxy each request goes through: one for `http://` URLs, one for
/// `https://` URLs (either may be none), the hosts reached directly, and
/// CA certificates to trust for an `https://` proxy.
///
/// [`Proxy::default`] is [`Proxy::none`]. `Debug` hides passwords.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxy {
    http: Option<ProxyUrl>,
    https: Option<ProxyUrl>,
    no_proxy: NoProxy,
    ca_files: Vec<PathBuf>,
}

impl Proxy {
    /// Every request direct; the environment is not read.
    pub fn none() -> Proxy {
        Proxy::default()
    }

    /// Every request through `url`, plain-HTTP and TLS registries alike,
    /// with no exceptions (add them with [`Proxy::with_no_proxy`]).
    pub fn all(url: ProxyUrl) -> Proxy {
        Proxy {
            http: Some(url.clone()),
            https: Some(url),
            ..Proxy::default()
        }
    }

    /// A setting as a user gives it (`--proxy`, a config's `proxy:`):
    /// `none` or the empty string for no proxy at all, else a URL every
    /// request goes through except to the hosts in `NO_PROXY` (curl
    /// honours `NO_PROXY` with `--proxy` too).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a URL [`ProxyUrl::parse`] refuses.
    pub fn from_setting(setting: &str) -> Result<Proxy, Error> {
        let s = setting.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(Proxy::none());
        }
        Ok(Proxy::all(ProxyUrl::parse(s)?).with_no_proxy(NoProxy::from_env()))
    }

    /// The proxies the environment names, as curl reads them: for
    /// `http://` URLs `http_proxy`, for `https://` URLs `https_proxy`,
    /// else `all_proxy` for both; each lower-case first, then upper-case
    /// (`HTTP_PROXY` is ignored when `REQUEST_METHOD` is set, as in a CGI
    /// program, where a request's `Proxy:` header would set it); hosts in
    /// `no_proxy`/`NO_PROXY` go direct. Empty values count as unset.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the variable whose value is not a proxy URL.
    pub fn from_env() -> Result<Proxy, Error> {
        Proxy::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Proxy::from_env`] reading variables through `get`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::from_env`].
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Proxy, Error> {
        let lookup = |name: &str| -> Result<Option<ProxyUrl>, Error> {
            let cgi = get("REQUEST_METHOD").is_some();
            let upper = name.to_ascii_uppercase();
            let found = [name.to_string(), upper.clone()]
                .into_iter()
                .filter(|n| !(cgi && n == "HTTP_PROXY"))
                .find_map(|n| get(&n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)));
            match found {
                Some((var, value)) => ProxyUrl::parse(&value).map(Some).map_err(|e| {
                    Error::config(format!("the environment variable {var}"), e.to_string())
                }),
                None => Ok(None),
            }
        };
        let all = lookup("all_proxy")?;
        let http = lookup("http_proxy")?.or_else(|| all.clone());
        let https = lookup("https_proxy")?.or(all);
        let no_proxy = NoProxy::parse(&env_var(&get, "no_proxy").unwrap_or_default());
        Ok(Proxy {
            http,
            https,
            no_proxy,
            ca_files: Vec::new(),
        })
    }

    /// The same, with `no_proxy` as the hosts reached directly.
    pub fn with_no_proxy(mut self, no_proxy: NoProxy) -> Proxy {
        self.no_proxy = no_proxy;
        self
    }

    /// The same, also trusting this CA certificate (PEM) for an
    /// `https://` proxy (the client's own CA files are trusted too).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Proxy {
        self.ca_files.push(path.into());
        self
    }

    /// The CA files given with [`Proxy::with_ca_file`].
    pub fn ca_files(&self) -> impl Iterator<Item = &Path> {
        self.ca_files.iter().map(PathBuf::as_path)
    }

    /// Whether every request goes direct.
    pub fn is_none(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// Whether plain-HTTP requests are forwarded through a proxy.
    pub fn forwards_plain_http(&self) -> bool {
        self.http.is_some()
    }

    /// The hosts reached directly.
    pub fn no_proxy(&self) -> &NoProxy {
        &self.no_proxy
    }

    /// The proxy a request to `url` goes through; `None`: direct.
    pub fn for_url(&self, url: &Url) -> Option<&ProxyUrl> {
        let proxy = match url.scheme() {
            "http" => self.http.as_ref(),
            "https" => self.https.as_ref(),
            _ => None,
        }?;
        (!self.no_proxy.matches(url)).then_some(proxy)
    }

    /// [`Proxy::for_url`] as an HTTP client's proxy hook takes it: the
    /// proxy's URL with its credentials. Logs at debug which way the host
    /// goes (the proxy shown without its password).
    pub fn route(&self, url: &Url) -> Option<Url> {
        let host = url.host_str().unwrap_or_default();
        match self.for_url(url) {
            Some(p) => {
                tracing::debug!(host, port = url.port_or_known_default(), proxy = %p, "through the proxy");
                Some(p.url().clone())
            }
            None => {
                if !self.is_none() {
                    tracing::debug!(host, "direct (no_proxy, or no proxy for its scheme)");
                }
                None
            }
        }
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.http, &self.https) {
            (None, None) => f.write_str("no proxy"),
            (Some(a), Some(b)) if a == b => write!(f, "{a}"),
            (a, b) => {
                let show =
                    |p: &Option<ProxyUrl>| p.as_ref().map_or("direct".into(), |p| p.to_string());
                write!(f, "http: {}, https: {}", show(a), show(b))
            }
        }
    }
}

/// `name` (lower-case), else its upper-case form, non-empty.
fn env_var(get: impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    [name.to_string(), name.to_ascii_uppercase()]
        .iter()
        .find_map(|n| get(n).filter(|v| !v.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn bypassed(list: &str, target: &str) -> bool {
        NoProxy::parse(list).matches(&url(target))
    }

    #[test]
    fn no_proxy_names_match_the_host_and_hosts_under_it() {
        for list in [
            "example.com",
            ".example.com",
            "*.example.com",
            "EXAMPLE.com.",
        ] {
            assert!(bypassed(list, "https://example.com/v2/"), "{list}");
            assert!(bypassed(list, "https://a.b.example.com/v2/"), "{list}");
            assert!(!bypassed(list, "https://badexample.com/v2/"), "{list}");
            assert!(!bypassed(list, "https://example.com.evil.io/"), "{list}");
        }
        assert!(bypassed("localhost", "http://LOCALHOST:5000/"));
        assert!(bypassed("a.io, b.io", "https://b.io/"));
        assert!(bypassed("a.io b.io", "https://b.io/"));
        assert!(!bypassed("", "https://b.io/"));
    }

    #[test]
    fn no_proxy_star_matches_everything() {
        assert!(bypassed("*", "https://anything.io/"));
        assert!(bypassed("a.io,*", "http://10.0.0.1:5000/"));
    }

    #[test]
    fn no_proxy_ports_match_only_that_port() {
        assert!(bypassed("reg.lan:5000", "http://reg.lan:5000/"));
        assert!(!bypassed("reg.lan:5000", "http://reg.lan:5001/"));
        // The scheme's default port counts.
        assert!(bypassed("reg.lan:443", "https://reg.lan/"));
        assert!(bypassed("127.0.0.1:5000", "http://127.0.0.1:5000/"));
        assert!(!bypassed("127.0.0.1:5000", "http://127.0.0.1:6000/"));
        assert!(bypassed("[::1]:5000", "http://[::1]:5000/"));
        assert!(!bypassed("[::1]:5000", "http://[::1]:5001/"));
    }

    #[test]
    fn no_proxy_addresses_and_networks_match_literal_addresses() {
        assert!(bypassed("10.1.2.3", "http://10.1.2.3:5000/"));
        assert!(!bypassed("10.1.2.3", "http://10.1.2.4:5000/"));
        assert!(bypassed("10.0.0.0/8", "https://10.200.3.4/"));
        assert!(!bypassed("10.0.0.0/8", "https://11.0.0.1/"));
        assert!(bypassed("192.168.1.0/24", "https://192.168.1.77/"));
        assert!(!bypassed("192.168.1.0/24", "https://192.168.2.1/"));
        assert!(bypassed("0.0.0.0/0", "https://1.2.3.4/"));
        assert!(bypassed("::1", "http://[::1]:5000/"));
        assert!(bypassed("[::1]", "http://[::1]:5000/"));
        assert!(bypassed("fd00::/8", "http://[fd12::5]/"));
        assert!(!bypassed("fd00::/8", "http://[fe80::1]/"));
        // Names are not resolved.
        assert!(!bypassed("127.0.0.1", "http://localhost:5000/"));
        // A v4 network does not match v6 hosts.
        assert!(!bypassed("0.0.0.0/0", "http://[::1]/"));
        // A bad prefix is a name, which matches no address.
        assert!(!bypassed("10.0.0.0/99", "http://10.0.0.1/"));
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn via(p: &Proxy, target: &str) -> Option<String> {
        p.for_url(&url(target)).map(|u| u.url().to_string())
    }

    #[test]
    fn the_environment_is_read_lower_case_first_by_scheme() {
        let p = Proxy::from_vars(vars(&[
            ("http_proxy", "http://lower:1"),
            ("HTTP_PROXY", "http://upper:1"),
            ("HTTPS_PROXY", "upper-tls:3128"),
        ]))
        .unwrap();
        assert_eq!(via(&p, "http://r.io/"), Some("http://lower:1/".into()));
        assert_eq!(
            via(&p, "https://r.io/"),
            Some("http://upper-tls:3128/".into())
        );

        let p = Proxy::from_vars(vars(&[("HTTPS_PROXY", "http://p:8080")])).unwrap();
        assert_eq!(
            via(&p, "http://r.io/"),
            None,
            "https_proxy is for https only"
        );
        assert!(!p.forwards_plain_http());

        let p = Proxy::from_vars(vars(&[
            ("ALL_PROXY", "http://all:1"),
            ("https_proxy", "http://tls:1"),
        ]))
        .unwrap();
        assert_eq!(via(&p, "http://r.io/"), Some("http://all:1/".into()));
        assert_eq!(via(&p, "https://r.io/"), Some("http://tls:1/".into()));

        // Empty counts as unset.
        let p =
            Proxy::from_vars(vars(&[("http_proxy", ""), ("HTTP_PROXY", "http://u:1")])).unwrap();
        assert_eq!(via(&p, "http://r.io/"), Some("http://u:1/".into()));
        assert!(Proxy::from_vars(vars(&[])).unwrap().is_none());
    }

    #[test]
    fn no_proxy_from_the_environment_applies() {
        let p = Proxy::from_vars(vars(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("no_proxy", ".corp.lan"),
            ("NO_PROXY", "*"),
        ]))
        .unwrap();
        assert_eq!(via(&p, "https://reg.corp.lan/"), None);
        assert_eq!(via(&p, "https://docker.io/"), Some("http://p:1/".into()));
    }

    #[test]
    fn upper_case_http_proxy_is_ignored_in_a_cgi_environment() {
        let p = Proxy::from_vars(vars(&[
            ("HTTP_PROXY", "http://from-a-header:1"),
            ("REQUEST_METHOD", "GET"),
        ]))
        .unwrap();
        assert_eq!(via(&p, "http://r.io/"), None);
    }

    #[test]
    fn a_bad_environment_value_names_the_variable_not_the_password() {
        let err = Proxy::from_vars(vars(&[("HTTPS_PROXY", "socks5://u:hunter2@p:1080")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTPS_PROXY"), "{err}");
        assert!(err.contains("socks5"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn settings_none_and_empty_mean_no_proxy() {
        assert!(Proxy::from_setting("none").unwrap().is_none());
        assert!(Proxy::from_setting("  ").unwrap().is_none());
        let p = Proxy::from_setting("proxy.corp:3128").unwrap();
        assert_eq!(
            via(&p, "http://r.io/"),
            Some("http://proxy.corp:3128/".into())
        );
        assert_eq!(
            via(&p, "https://r.io/"),
            Some("http://proxy.corp:3128/".into())
        );
    }

    #[test]
    fn proxy_urls_are_checked() {
        for bad in [
            "socks5://p:1080",
            "ftp://p",
            "http://",
            "http://p:3128/some/path",
            "http://p:99999",
        ] {
            assert!(ProxyUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ProxyUrl::parse("https://p.corp")
                .unwrap()
                .url()
                .port_or_known_default(),
            Some(443)
        );
    }

    #[test]
    fn passwords_are_never_shown() {
        let p = ProxyUrl::parse("http://alice:s%40cret-pw@proxy.corp:3128").unwrap();
        assert_eq!(p.to_string(), "http://alice:***@proxy.corp:3128");
        assert_eq!(
            format!("{p:?}"),
            "ProxyUrl(http://alice:***@proxy.corp:3128)"
        );
        assert!(p.has_credentials());
        // The client still gets them.
        assert_eq!(p.url().password(), Some("s%40cret-pw"));
        let all = Proxy::all(p);
        for shown in [format!("{all}"), format!("{all:?}")] {
            assert!(!shown.contains("cret-pw"), "{shown}");
        }
        let bare = ProxyUrl::parse("http://proxy.corp:3128").unwrap();
        assert_eq!(bare.to_string(), "http://proxy.corp:3128");
        let err = ProxyUrl::parse("http://bob:hunter2@proxy corp:1").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("bob:***@"), "{err}");
        assert_eq!(redact_text("u:p@h:1"), "u:***@h:1");
        assert_eq!(redact_text("http://h:1/a@b"), "http://h:1/a@b");
    }
}
