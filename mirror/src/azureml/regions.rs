//! Azure region names, so a typo in `--region` is caught before anything
//! is copied (a wrong region means tags that do not exist).

/// Azure regions by their programmatic names (public, government and China
/// clouds). Regions open every year: extend this list as they do.
#[rustfmt::skip]
pub const AZURE_REGIONS: &[&str] = &[
    "australiacentral", "australiacentral2", "australiaeast", "australiasoutheast",
    "austriaeast", "belgiumcentral", "brazilsouth", "brazilsoutheast", "canadacentral",
    "canadaeast", "centralindia", "centralus", "chilecentral", "eastasia", "eastus",
    "eastus2", "francecentral", "francesouth", "germanynorth", "germanywestcentral",
    "indonesiacentral", "israelcentral", "italynorth", "japaneast", "japanwest",
    "jioindiacentral", "jioindiawest", "koreacentral", "koreasouth", "malaysiawest",
    "mexicocentral", "newzealandnorth", "northcentralus", "northeurope", "norwayeast",
    "norwaywest", "polandcentral", "qatarcentral", "southafricanorth", "southafricawest",
    "southcentralus", "southeastasia", "southindia", "spaincentral", "swedencentral",
    "switzerlandnorth", "switzerlandwest", "uaecentral", "uaenorth", "uksouth", "ukwest",
    "westcentralus", "westeurope", "westindia", "westus", "westus2", "westus3",
    "usgovarizona", "usgovtexas", "usgovvirginia", "usdodcentral", "usdodeast",
    "chinaeast", "chinaeast2", "chinaeast3", "chinanorth", "chinanorth2", "chinanorth3",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an Azure region{}", suggestion.map(|s| format!("; did you mean {s:?}?")).unwrap_or_default())]
pub struct UnknownRegion {
    pub input: String,
    pub suggestion: Option<&'static str>,
}

/// The region's programmatic name: `East US 2` and `EastUS2` are `eastus2`.
pub fn check(input: &str) -> Result<&'static str, UnknownRegion> {
    let name: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    if let Some(r) = AZURE_REGIONS.iter().find(|r| **r == name) {
        return Ok(r);
    }
    let suggestion = AZURE_REGIONS
        .iter()
        .map(|r| (edit_distance(&name, r), *r))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, r)| r);
    Err(UnknownRegion {
        input: input.to_string(),
        suggestion,
    })
}

/// Levenshtein distance (regions are short; two rows suffice).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_typos_get_a_suggestion() {
        assert_eq!(check("eastus"), Ok("eastus"));
        assert_eq!(check("East US 2"), Ok("eastus2"));
        assert_eq!(check("west-europe"), Ok("westeurope"));
        let err = check("westeurop").unwrap_err();
        assert_eq!(err.suggestion, Some("westeurope"));
        assert!(
            err.to_string().contains("did you mean \"westeurope\""),
            "{err}"
        );
        let err = check("atlantis").unwrap_err();
        assert_eq!(err.suggestion, None);
        assert_eq!(err.to_string(), "\"atlantis\" is not an Azure region");
    }
}
