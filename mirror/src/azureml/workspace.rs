//! Starting from the AzureML workspace, as the script this project
//! replaces did (`-w ws -wsg rg -s sub`): Azure Resource Manager says where
//! the workspace is (its `location`: the region whose tags to mirror) and
//! which registry is attached to it (`properties.containerRegistry`, whose
//! `loginServer` is the target). Given flags must agree with it.

use std::path::{Path, PathBuf};

use super::arm::{one_line, ArmClient, ArmError, ArmErrorKind, Registry, ResourceId, Workspace};
use super::regions;

/// What the workspace decides: the region and the registry to mirror into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceTarget {
    pub workspace: Workspace,
    /// The workspace's `location`, as a region name (`eastus`).
    pub region: String,
    pub registry: Registry,
}

/// `workspace` in `resource_group` of `subscription`.
pub fn workspace_id(
    subscription: &str,
    resource_group: &str,
    name: &str,
) -> Result<ResourceId, String> {
    let id = ResourceId::workspace(subscription.trim(), resource_group.trim(), name.trim());
    id.check()?;
    Ok(id)
}

/// Reads the workspace, then its registry. A workspace without a registry
/// is an [`ArmErrorKind::NoRegistry`] error (the caller asks for the
/// target instead).
pub async fn resolve(arm: &ArmClient, id: &ResourceId) -> Result<WorkspaceTarget, ArmError> {
    let (workspace, registry) = read(arm, id).await?;
    let Some(registry) = registry else {
        return Err(no_registry(id));
    };
    Ok(WorkspaceTarget {
        region: region_of(&workspace.location),
        workspace,
        registry,
    })
}

/// Reads the workspace, then its registry when one is attached.
pub async fn read(
    arm: &ArmClient,
    id: &ResourceId,
) -> Result<(Workspace, Option<Registry>), ArmError> {
    let workspace = arm.workspace(id).await?;
    let registry = match &workspace.container_registry {
        Some(registry_id) => Some(arm.registry(registry_id).await?),
        None => None,
    };
    Ok((workspace, registry))
}

const NO_REGISTRY: &str = "it has no container registry attached (properties.containerRegistry is empty), so it names no registry to mirror into";

fn no_registry(id: &ResourceId) -> ArmError {
    ArmError::new(
        id.describe("workspace"),
        ArmErrorKind::NoRegistry,
        NO_REGISTRY,
    )
}

/// The region and the target registry host a run uses, from the
/// workspace and what was given beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub region: String,
    /// The registry host to mirror into.
    pub target: String,
    /// The workspace's registry, when it has one (it is the target then).
    pub registry: Option<Registry>,
}

/// Settles the region and the target: the workspace's, a given one
/// agreeing with it, or (a workspace with no registry attached) the given
/// `target`, without which there is none to mirror into.
pub fn settle(
    workspace: Workspace,
    registry: Option<Registry>,
    region: Option<&str>,
    target: Option<&str>,
) -> Result<Settled, String> {
    let ws_region = checked_region(&workspace, region)?;
    match registry {
        Some(registry) => {
            let found = WorkspaceTarget {
                region: ws_region,
                workspace,
                registry,
            };
            found.agrees_with(None, target)?;
            Ok(Settled {
                region: found.region,
                target: found.registry.login_server.clone(),
                registry: Some(found.registry),
            })
        }
        None => match target {
            Some(host) => Ok(Settled {
                region: ws_region,
                target: host.trim().to_ascii_lowercase(),
                registry: None,
            }),
            None => Err(format!(
                "{}: {NO_REGISTRY}: give the registry to mirror into with --target",
                workspace.id.describe("workspace")
            )),
        },
    }
}

/// The workspace's region, checked against one given beside it.
pub fn checked_region(workspace: &Workspace, given: Option<&str>) -> Result<String, String> {
    let region = region_of(&workspace.location);
    match given {
        Some(r) if region_of(r) != region => Err(region_disagrees(r, workspace, &region)),
        _ => Ok(region),
    }
}

fn region_disagrees(given: &str, workspace: &Workspace, region: &str) -> String {
    format!(
        "the region {:?} disagrees with workspace {} (resource group {}), which is in {region}: leave the region out, or name the right workspace",
        one_line(given, 80),
        workspace.id.name,
        workspace.id.resource_group,
    )
}

/// A location as a region name: `East US 2` → `eastus2`; one this build
/// does not list (a new or canary region) kept as ARM spells it, in lower
/// case without spaces: ARM is the authority here.
pub fn region_of(location: &str) -> String {
    match regions::check(location) {
        Ok(r) => r.to_string(),
        Err(_) => location
            .chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect(),
    }
}

impl WorkspaceTarget {
    /// Checks a region and a target registry host given beside the
    /// workspace: each, when given, must be the workspace's.
    pub fn agrees_with(
        &self,
        region: Option<&str>,
        target_registry: Option<&str>,
    ) -> Result<(), String> {
        let ws = &self.workspace.id;
        if let Some(r) = region {
            if region_of(r) != self.region {
                return Err(region_disagrees(r, &self.workspace, &self.region));
            }
        }
        if let Some(t) = target_registry {
            if !t.trim().eq_ignore_ascii_case(&self.registry.login_server) {
                return Err(format!(
                    "the target {:?} disagrees with workspace {} (resource group {}), whose registry is {} ({}): leave the target out, or name the right workspace",
                    one_line(t, 200),
                    ws.name,
                    ws.resource_group,
                    self.registry.login_server,
                    self.registry.id.name
                ));
            }
        }
        Ok(())
    }
}

/// The largest azureProfile.json read (a profile with hundreds of
/// subscriptions is a few hundred KiB).
const MAX_PROFILE: u64 = 8 * 1024 * 1024;

/// The Azure CLI's configuration directory: `$AZURE_CONFIG_DIR`, else
/// `~/.azure`.
pub fn azure_config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("AZURE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".azure"))
}

/// The subscription to use, as the Azure CLI picks it: `given` (an id,
/// or a name looked up in the CLI's profile), else the profile's default
/// (`az account set --subscription …`), from `config_dir/azureProfile.json`.
pub fn subscription(given: Option<&str>, config_dir: Option<&Path>) -> Result<String, String> {
    let given = given.map(str::trim).filter(|s| !s.is_empty());
    if let Some(s) = given {
        if is_guid(s) {
            return Ok(s.to_ascii_lowercase());
        }
    }
    let Some(dir) = config_dir else {
        return Err(match given {
            Some(s) => format!("subscription {s:?} is not an id, and there is no Azure CLI profile to look its name up in (HOME and AZURE_CONFIG_DIR are unset)"),
            None => "no subscription given, and there is no Azure CLI profile to take the default from (HOME and AZURE_CONFIG_DIR are unset): give the subscription".into(),
        });
    };
    let path = dir.join("azureProfile.json");
    let subs = read_profile(&path)?;
    match given {
        Some(name) => {
            let found: Vec<&ProfileSubscription> =
                subs.iter().filter(|s| s.name.eq_ignore_ascii_case(name)).collect();
            match found.as_slice() {
                [one] => Ok(one.id.clone()),
                [] => Err(format!(
                    "subscription {name:?} is not an id, and the Azure CLI profile {} has no subscription of that name",
                    path.display()
                )),
                _ => Err(format!(
                    "subscription {name:?} names {} subscriptions in {}: give its id",
                    found.len(),
                    path.display()
                )),
            }
        }
        None => subs
            .iter()
            .find(|s| s.is_default)
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                format!(
                    "no subscription given, and the Azure CLI profile {} has no default (az account set --subscription ID): give the subscription",
                    path.display()
                )
            }),
    }
}

struct ProfileSubscription {
    id: String,
    name: String,
    is_default: bool,
}

fn read_profile(path: &Path) -> Result<Vec<ProfileSubscription>, String> {
    use std::io::Read;
    let fail = |why: String| format!("reading the Azure CLI profile {}: {why}", path.display());
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            fail("it does not exist (az login writes it); give the subscription".into())
        }
        _ => fail(e.to_string()),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_PROFILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > MAX_PROFILE {
        return Err(fail(format!("larger than {MAX_PROFILE} bytes")));
    }
    // The Azure CLI writes it with a byte order mark.
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let subs = value
        .get("subscriptions")
        .and_then(|s| s.as_array())
        .ok_or_else(|| fail("no \"subscriptions\" list".into()))?;
    Ok(subs
        .iter()
        .filter_map(|s| {
            let id = s.get("id")?.as_str()?.trim();
            is_guid(id).then(|| ProfileSubscription {
                id: id.to_ascii_lowercase(),
                name: s
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("")
                    .to_string(),
                is_default: s
                    .get("isDefault")
                    .and_then(|d| d.as_bool())
                    .unwrap_or(false),
            })
        })
        .collect())
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azureml::arm::Registry;

    const SUB_A: &str = "00000000-1111-2222-3333-444444444444";
    const SUB_B: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

    fn profile(dir: &Path, default_b: bool) {
        let text = format!(
            "\u{feff}{{\"installationId\": \"x\", \"subscriptions\": [\
             {{\"id\": \"{SUB_A}\", \"name\": \"Contoso Dev\", \"isDefault\": {}, \"user\": {{\"name\": \"u\"}}}},\
             {{\"id\": \"{SUB_B}\", \"name\": \"Contoso Prod\", \"isDefault\": {default_b}}}]}}",
            !default_b
        );
        std::fs::write(dir.join("azureProfile.json"), text).unwrap();
    }

    #[test]
    fn the_subscription_defaults_as_the_azure_cli_does() {
        let dir = tempfile::tempdir().unwrap();
        profile(dir.path(), true);
        assert_eq!(subscription(None, Some(dir.path())).unwrap(), SUB_B);
        assert_eq!(
            subscription(Some("contoso dev"), Some(dir.path())).unwrap(),
            SUB_A
        );
        // An id is taken as it is, profile or not.
        assert_eq!(
            subscription(Some(&SUB_A.to_uppercase()), None).unwrap(),
            SUB_A
        );
        let err = subscription(Some("Nope"), Some(dir.path())).unwrap_err();
        assert!(err.contains("no subscription of that name"), "{err}");
    }

    #[test]
    fn no_default_subscription_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = subscription(None, Some(dir.path())).unwrap_err();
        assert!(
            err.contains("does not exist") && err.contains("give the subscription"),
            "{err}"
        );
        std::fs::write(
            dir.path().join("azureProfile.json"),
            r#"{"subscriptions": []}"#,
        )
        .unwrap();
        let err = subscription(None, Some(dir.path())).unwrap_err();
        assert!(err.contains("has no default"), "{err}");
        std::fs::write(dir.path().join("azureProfile.json"), "[").unwrap();
        assert!(subscription(None, Some(dir.path()))
            .unwrap_err()
            .contains("not JSON"));
        assert!(subscription(None, None)
            .unwrap_err()
            .contains("no Azure CLI profile"));
    }

    fn target() -> WorkspaceTarget {
        WorkspaceTarget {
            workspace: Workspace {
                id: ResourceId::workspace(SUB_A, "ml-rg", "ws"),
                location: "eastus".into(),
                container_registry: Some(ResourceId::registry(SUB_A, "ml-rg", "contoso")),
            },
            region: "eastus".into(),
            registry: Registry {
                id: ResourceId::registry(SUB_A, "ml-rg", "contoso"),
                login_server: "contoso.azurecr.io".into(),
                location: Some("eastus".into()),
            },
        }
    }

    #[test]
    fn given_flags_must_agree_with_the_workspace() {
        let t = target();
        assert!(t.agrees_with(None, None).is_ok());
        assert!(t
            .agrees_with(Some("East US"), Some("Contoso.azurecr.io"))
            .is_ok());
        let err = t.agrees_with(Some("westus"), None).unwrap_err();
        assert!(
            err.contains("\"westus\"") && err.contains("which is in eastus"),
            "{err}"
        );
        let err = t
            .agrees_with(None, Some("fabrikam.azurecr.io"))
            .unwrap_err();
        assert!(
            err.contains("whose registry is contoso.azurecr.io"),
            "{err}"
        );
    }

    #[test]
    fn a_workspace_settles_the_region_and_the_target_or_asks_for_the_target() {
        let t = target();
        let settled = settle(t.workspace.clone(), Some(t.registry.clone()), None, None).unwrap();
        assert_eq!(
            (settled.region.as_str(), settled.target.as_str()),
            ("eastus", "contoso.azurecr.io")
        );
        assert!(settle(
            t.workspace.clone(),
            Some(t.registry.clone()),
            None,
            Some("fabrikam.azurecr.io")
        )
        .unwrap_err()
        .contains("disagrees"));

        // No registry attached: the given target, the workspace's region.
        let bare = Workspace {
            container_registry: None,
            ..t.workspace.clone()
        };
        let err = settle(bare.clone(), None, None, None).unwrap_err();
        assert!(
            err.contains("no container registry attached") && err.contains("--target"),
            "{err}"
        );
        let settled = settle(bare.clone(), None, None, Some("Fabrikam.azurecr.io")).unwrap();
        assert_eq!(settled.target, "fabrikam.azurecr.io");
        assert_eq!(settled.region, "eastus");
        assert!(settled.registry.is_none());
        let err = settle(bare, None, Some("westus"), Some("fabrikam.azurecr.io")).unwrap_err();
        assert!(err.contains("which is in eastus"), "{err}");
    }

    #[test]
    fn regions_from_locations() {
        assert_eq!(region_of("East US 2"), "eastus2");
        assert_eq!(region_of("eastus2euap"), "eastus2euap");
    }

    #[test]
    fn workspace_ids_are_checked() {
        assert!(workspace_id(SUB_A, "rg", "ws").is_ok());
        assert!(workspace_id(SUB_A, "rg/x", "ws").is_err());
        assert!(workspace_id(SUB_A, "rg", "").is_err());
    }
}
