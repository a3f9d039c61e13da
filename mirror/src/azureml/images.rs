//! The runtime images as data: one table to extend, and the tag rule.

/// The six common-runtime repositories, as the system registry names them.
pub const RUNTIME_REPOSITORIES: [&str; 6] = [
    "boot/vm-bootstrapper/binimage/linux",
    "exe/execution-wrapper/installed",
    "cap/lifecycler/installed",
    "cap/cs-capability/installed",
    "cap/data-capability/installed",
    "cap/hosttools-capability/installed",
];

/// Where the public Microsoft Container Registry keeps the same repositories.
pub const MCR_HOST: &str = "mcr.microsoft.com";
pub const MCR_PREFIX: &str = "azureml/runtime";

/// The source tag for a region: `eastus-stable`.
pub fn source_tag(region: &str) -> String {
    format!("{region}-stable")
}

/// The tag in the customer's registry: `stable`, or the regional tag kept
/// as it is (`regional_tag_prefix: true` in the job variables).
pub fn target_tag(region: &str, regional_tags: bool) -> String {
    if regional_tags {
        source_tag(region)
    } else {
        "stable".into()
    }
}

/// `prefix/repository`, or the repository alone without a prefix.
pub fn under_prefix(prefix: Option<&str>, repository: &str) -> String {
    match prefix
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(p) => format!("{p}/{repository}"),
        None => repository.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_prefixes() {
        assert_eq!(source_tag("eastus"), "eastus-stable");
        assert_eq!(target_tag("eastus", false), "stable");
        assert_eq!(target_tag("eastus", true), "eastus-stable");
        assert_eq!(
            under_prefix(Some("azureml/runtime/"), RUNTIME_REPOSITORIES[0]),
            "azureml/runtime/boot/vm-bootstrapper/binimage/linux"
        );
        assert_eq!(under_prefix(Some(""), "a/b"), "a/b");
        assert_eq!(under_prefix(None, "a/b"), "a/b");
    }
}
