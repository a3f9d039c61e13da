//! The two job variables that point the AzureML runtime at a mirror, in
//! every form a user pastes them into. Each form quotes values for its own
//! surface, so a password with quotes, backslashes or `$` survives.

use registry_client::Secret;
use serde::Serialize;

pub const USE_COMMON_RUNTIME: &str = "AZUREML_COMPUTE_USE_COMMON_RUNTIME";
pub const CONFIG_OVERRIDE: &str = "AZUREML_CR_BOOTSTRAPPER_CONFIG_OVERRIDE";

/// What the runtime needs to pull from the customer's registry.
#[derive(Debug, Clone)]
pub struct JobVariables {
    /// `<acr>.azurecr.io`.
    pub registry: String,
    pub username: String,
    pub password: Secret,
    /// Present only when the images sit under a prefix in the target.
    pub repo_prefix: Option<String>,
    /// Whether the target keeps `{region}-stable` tags.
    pub regional_tag_prefix: bool,
}

/// The forms `mirror azureml env --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `KEY='value'` lines, read alike by python-dotenv (`az ml` `.env`
    /// files) and `set -a; . ./FILE` in a POSIX shell.
    Dotenv,
    /// `export KEY='value'` lines for POSIX shells.
    Shell,
    /// One JSON object.
    Json,
    /// A YAML mapping.
    Yaml,
    /// A Python dict for SDK v1 (`run_config.environment_variables`).
    PythonSdkV1,
    /// A Python dict for SDK v2 (`command(environment_variables=...)`).
    PythonSdkV2,
    /// The `environment_variables:` block of a CLI v2 job YAML.
    CliV2Yaml,
}

/// What the password reads as when it is not to be shown.
pub const MASK: &str = "********";

#[derive(Serialize)]
struct Override<'a> {
    capabilities_registry: Capabilities<'a>,
}

#[derive(Serialize)]
struct Capabilities<'a> {
    registry: RegistryLogin<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repo_prefix: Option<&'a str>,
    regional_tag_prefix: bool,
}

#[derive(Serialize)]
struct RegistryLogin<'a> {
    url: &'a str,
    username: &'a str,
    password: &'a str,
}

impl JobVariables {
    /// The override's JSON, with the password or the mask.
    pub fn config_override(&self, reveal: bool) -> String {
        // serde_json writes UTF-8 (its strings come from `String`s).
        String::from_utf8(self.override_with(reveal, serde_json::ser::CompactFormatter))
            .expect("JSON is UTF-8")
    }

    /// The same JSON with every `"`, `\`, `'`, `$` and backtick inside its
    /// strings written as `\u00XX` (and control characters as serde_json
    /// escapes them): it decodes to the same value, and nothing in it is
    /// special to any reader's single quotes (see [`Format::Dotenv`]).
    pub fn config_override_inert(&self, reveal: bool) -> String {
        // `Inert` only adds ASCII escapes to what serde_json writes as UTF-8.
        String::from_utf8(self.override_with(reveal, Inert)).expect("JSON is UTF-8")
    }

    fn override_with(&self, reveal: bool, formatter: impl serde_json::ser::Formatter) -> Vec<u8> {
        let password = if reveal { self.password.expose() } else { MASK };
        let value = Override {
            capabilities_registry: Capabilities {
                registry: RegistryLogin {
                    url: &self.registry,
                    username: &self.username,
                    password,
                },
                repo_prefix: self.repo_prefix.as_deref().filter(|p| !p.is_empty()),
                regional_tag_prefix: self.regional_tag_prefix,
            },
        };
        // Strings and a bool into a Vec: nothing here can fail (no I/O, no
        // map with non-string keys), whatever the user gave.
        let mut out = Vec::new();
        value
            .serialize(&mut serde_json::Serializer::with_formatter(
                &mut out, formatter,
            ))
            .expect("strings serialise");
        out
    }

    /// Reads an override back (as a job would see it), to check it.
    pub fn from_override(json: &str) -> Result<JobVariables, String> {
        let v: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| format!("{CONFIG_OVERRIDE} is not JSON: {e}"))?;
        let c = &v["capabilities_registry"];
        let text = |value: &serde_json::Value, key: &str| {
            value
                .as_str()
                .map(str::to_string)
                .ok_or(format!("{CONFIG_OVERRIDE} has no {key}"))
        };
        Ok(JobVariables {
            registry: text(&c["registry"]["url"], "capabilities_registry.registry.url")?,
            username: text(
                &c["registry"]["username"],
                "capabilities_registry.registry.username",
            )?,
            password: Secret::new(text(
                &c["registry"]["password"],
                "capabilities_registry.registry.password",
            )?),
            repo_prefix: c["repo_prefix"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            regional_tag_prefix: c["regional_tag_prefix"].as_bool().unwrap_or(false),
        })
    }

    /// The two variables, in order.
    pub fn pairs(&self, reveal: bool) -> [(&'static str, String); 2] {
        [
            (USE_COMMON_RUNTIME, "true".to_string()),
            (CONFIG_OVERRIDE, self.config_override(reveal)),
        ]
    }

    /// The variables written in `format`.
    pub fn render(&self, format: Format, reveal: bool) -> String {
        let pairs = self.pairs(reveal);
        let mut out = String::new();
        match format {
            Format::Dotenv => {
                // One text that python-dotenv and `set -a; . ./FILE` in sh
                // or bash read alike (the tests read it with all three): single
                // quotes around a value with no `'`, `$`, backtick, newline,
                // `\\` or `\'` in it (python-dotenv expands `${NAME}` and
                // decodes `\\` and `\'` even in single quotes; sh does
                // neither). The override's JSON is written inert for that.
                let values = ["true".to_string(), self.config_override_inert(reveal)];
                for ((k, _), v) in pairs.iter().zip(&values) {
                    out.push_str(&format!("{k}={}\n", inert_single_quote(v)));
                }
            }
            Format::Shell => {
                for (k, v) in &pairs {
                    out.push_str(&format!("export {k}={}\n", shell_quote(v)));
                }
            }
            Format::Json => {
                let map: serde_json::Map<String, serde_json::Value> = pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
                    .collect();
                // A map of strings to strings always serialises.
                out = serde_json::to_string_pretty(&map).expect("strings serialise");
                out.push('\n');
            }
            Format::Yaml => {
                for (k, v) in &pairs {
                    out.push_str(&format!("{k}: {}\n", json_quote(v)));
                }
            }
            Format::CliV2Yaml => {
                out.push_str("# In the job YAML (az ml job create --file job.yml):\n");
                out.push_str("environment_variables:\n");
                for (k, v) in &pairs {
                    out.push_str(&format!("  {k}: {}\n", json_quote(v)));
                }
            }
            Format::PythonSdkV1 | Format::PythonSdkV2 => {
                out.push_str(if format == Format::PythonSdkV1 {
                    "# SDK v1: run_config.environment_variables.update(mirror_environment_variables)\n"
                } else {
                    "# SDK v2: command(..., environment_variables=mirror_environment_variables)\n"
                });
                out.push_str("mirror_environment_variables = {\n");
                for (k, v) in &pairs {
                    out.push_str(&format!("    {}: {},\n", json_quote(k), json_quote(v)));
                }
                out.push_str("}\n");
            }
        }
        out
    }
}

/// A JSON string literal: also a YAML double-quoted scalar and a Python
/// string literal (the escapes serde_json writes are valid in all three).
fn json_quote(s: &str) -> String {
    // Serialising a `&str` cannot fail.
    serde_json::to_string(s).expect("strings serialise")
}

/// POSIX single quotes: nothing inside is special; a `'` closes, is
/// escaped, and reopens.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Single quotes around a value that needs no escape in any reader's.
fn inert_single_quote(s: &str) -> String {
    assert!(
        !s.contains(['\'', '$', '`', '\n', '\r']) && !s.contains(r"\\"),
        "not inert: {s}"
    );
    format!("'{s}'")
}

/// The characters [`JobVariables::config_override_inert`] writes as
/// `\u00XX` inside JSON strings.
const NOT_INERT: [char; 5] = ['"', '\\', '\'', '$', '`'];

/// serde_json's compact form, but with [`NOT_INERT`] escaped as `\u00XX`.
struct Inert;

impl serde_json::ser::Formatter for Inert {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // serde_json hands `"` and `\` to write_char_escape; `'`, `$` and
        // the backtick arrive here.
        let mut rest = fragment;
        while let Some(i) = rest.find(NOT_INERT) {
            writer.write_all(&rest.as_bytes()[..i])?;
            write!(writer, "\\u{:04x}", rest.as_bytes()[i])?;
            rest = &rest[i + 1..];
        }
        writer.write_all(rest.as_bytes())
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        use serde_json::ser::CharEscape;
        match char_escape {
            CharEscape::Quote => writer.write_all(br"\u0022"),
            CharEscape::ReverseSolidus => writer.write_all(br"\u005c"),
            other => serde_json::ser::CompactFormatter.write_char_escape(writer, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(password: &str, prefix: Option<&str>) -> JobVariables {
        JobVariables {
            registry: "contoso.azurecr.io".into(),
            username: "mirror-pull".into(),
            password: Secret::new(password),
            repo_prefix: prefix.map(Into::into),
            regional_tag_prefix: false,
        }
    }

    #[test]
    fn the_override_has_the_documented_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&vars("pw", Some("azureml")).config_override(true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"capabilities_registry": {
                "registry": {"url": "contoso.azurecr.io", "username": "mirror-pull", "password": "pw"},
                "repo_prefix": "azureml",
                "regional_tag_prefix": false}})
        );
        let v: serde_json::Value =
            serde_json::from_str(&vars("pw", None).config_override(true)).unwrap();
        assert!(v["capabilities_registry"].get("repo_prefix").is_none());
    }

    #[test]
    fn the_password_is_masked_unless_revealed_and_debug_never_shows_it() {
        let v = vars("s3cret-value", None);
        for f in [Format::Dotenv, Format::Json, Format::PythonSdkV2] {
            assert!(!v.render(f, false).contains("s3cret-value"));
            assert!(v.render(f, false).contains(MASK));
            assert!(v.render(f, true).contains("s3cret-value"));
        }
        assert!(!format!("{v:?}").contains("s3cret-value"));
    }

    #[test]
    fn an_override_reads_back_and_a_broken_one_is_named() {
        let v = vars("pw\"'$", Some("azureml"));
        let back = JobVariables::from_override(&v.config_override(true)).unwrap();
        assert_eq!(back.password.expose(), "pw\"'$");
        assert_eq!(back.repo_prefix.as_deref(), Some("azureml"));
        assert_eq!(back.registry, "contoso.azurecr.io");
        let err = JobVariables::from_override(r#"{"capabilities_registry": {}}"#).unwrap_err();
        assert!(err.contains("registry.url"), "{err}");
    }

    #[test]
    fn the_inert_override_decodes_to_the_same_value() {
        let nasty = "p'a\"s\\s$HOME `x` \n\t\u{1} é ${Y}";
        let v = vars(nasty, Some("az'ml"));
        let inert = v.config_override_inert(true);
        assert!(!inert.contains(['\'', '$', '`', '\n']), "{inert}");
        assert!(
            !inert.contains(r"\\") && !inert.contains(r#"\""#),
            "{inert}"
        );
        let a: serde_json::Value = serde_json::from_str(&inert).unwrap();
        let b: serde_json::Value = serde_json::from_str(&v.config_override(true)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["capabilities_registry"]["registry"]["password"], nasty);
    }

    #[test]
    fn json_output_parses_back() {
        let nasty = r#"p'a"s\s$HOME`x`!{}"#;
        let out = vars(nasty, None).render(Format::Json, true);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let o: serde_json::Value =
            serde_json::from_str(v[CONFIG_OVERRIDE].as_str().unwrap()).unwrap();
        assert_eq!(o["capabilities_registry"]["registry"]["password"], nasty);
        assert_eq!(v[USE_COMMON_RUNTIME], "true");
    }
}
