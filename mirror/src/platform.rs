//! `--platform os/arch[/variant]` filters for multi-platform indexes.

use std::fmt;
use std::str::FromStr;

use registry_client::Platform;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformFilter {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformFilter {
    /// A filter without a variant matches every variant.
    pub fn matches(&self, p: &Platform) -> bool {
        self.os == p.os
            && self.architecture == p.architecture
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p.variant.as_deref() == Some(v.as_str()))
    }
}

/// Whether a config of this media type is an image config, which names the
/// platform the image runs on (an artifact's config does not).
pub fn is_image_config(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.config.v1+json"
        || media_type == "application/vnd.docker.container.image.v1+json"
}

/// The platform an image config names (`os`, `architecture`, `variant`);
/// `None` when it names none.
pub fn of_config(config: &[u8]) -> Option<Platform> {
    serde_json::from_slice::<Platform>(config).ok()
}

/// `os/arch[/variant]`.
pub fn describe(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

impl FromStr for PlatformFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad =
            || format!("platform {s:?} must be os/arch or os/arch/variant (e.g. linux/amd64)");
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(PlatformFilter {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }
}

impl fmt::Display for PlatformFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(str::to_string),
            os_version: None,
        }
    }

    #[test]
    fn parses_and_matches() {
        let f: PlatformFilter = "linux/arm64".parse().unwrap();
        assert!(f.matches(&p("linux", "arm64", Some("v8"))));
        assert!(!f.matches(&p("linux", "amd64", None)));
        let v: PlatformFilter = "linux/arm/v7".parse().unwrap();
        assert!(v.matches(&p("linux", "arm", Some("v7"))));
        assert!(!v.matches(&p("linux", "arm", Some("v6"))));
        assert!("linux"
            .parse::<PlatformFilter>()
            .unwrap_err()
            .contains("\"linux\""));
        assert!("linux//x".parse::<PlatformFilter>().is_err());
    }
}
