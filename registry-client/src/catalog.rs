//! The repository catalog (`GET /v2/_catalog`), following `Link`
//! pagination. Not every registry serves it (Docker Hub does not); those
//! answer with an error the caller reports.

use http::{header, Method};

use crate::auth::Scopes;
use crate::client::{read_capped, Call, Client};
use crate::error::{redact_url, Error};
use crate::tags::next_link;

const CATALOG_PAGE_LIMIT: u64 = 16 * 1024 * 1024;

impl Client {
    /// Every repository name of a registry (as written in references).
    pub async fn list_repositories(&self, registry: &str) -> Result<Vec<String>, Error> {
        let host = crate::reference::api_host(registry);
        let mut url = self
            .base_url(host)?
            .join("v2/_catalog")
            .expect("static path");
        let mut all = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let resp = self
                .send(Call::new(
                    Method::GET,
                    url.clone(),
                    registry,
                    Scopes::new().with("registry", "catalog", &["*"]),
                ))
                .await?;
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link)
                .and_then(|l| url.join(&l).ok());
            let body = read_capped(resp, CATALOG_PAGE_LIMIT)
                .await
                .map_err(|e| Error::Transport {
                    method: "GET".into(),
                    url: redact_url(&url),
                    source: e.without_url(),
                })?
                .ok_or_else(|| Error::TooLarge {
                    what: "catalog page".into(),
                    url: redact_url(&url),
                    limit: CATALOG_PAGE_LIMIT,
                })?;
            #[derive(serde::Deserialize)]
            struct Page {
                #[serde(default)]
                repositories: Option<Vec<String>>,
            }
            let page: Page = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
                method: "GET".into(),
                url: redact_url(&url),
                reason: format!("catalog is not valid JSON: {e}"),
            })?;
            all.extend(page.repositories.unwrap_or_default());
            match next {
                // A registry that hands back the same link would loop forever.
                Some(n) if seen.insert(n.to_string()) => url = n,
                _ => return Ok(all),
            }
        }
    }
}
