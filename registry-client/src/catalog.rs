//! The repository catalog (`GET /v2/_catalog`), following `Link`
//! pagination. Not every registry serves it (Docker Hub does not); those
//! answer with an error the caller reports.

use http::Method;

use crate::auth::Scopes;
use crate::client::{Call, Client};
use crate::error::Error;
use crate::tags::follow_pages;

impl Client {
    /// Every repository name of a registry (as written in references),
    /// following `Link` pages.
    ///
    /// # Errors
    ///
    /// Registries without a catalog (Docker Hub, some clouds) answer with
    /// an error status or refuse the scope; [`Error::Exceeded`] past the
    /// [`Limits`](crate::Limits).
    pub async fn list_repositories(&self, registry: &str) -> Result<Vec<String>, Error> {
        let host = crate::reference::api_host(registry);
        let first = self
            .base_url(host)?
            .join("v2/_catalog")
            .expect("static path");
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let what = format!("the catalog of {registry}");
        follow_pages(&what, self.limits(), |next| {
            let url = next.unwrap_or_else(|| first.clone());
            async move {
                let call = Call::new(
                    Method::GET,
                    url,
                    registry,
                    Scopes::new().with("registry", "catalog", &["*"]),
                );
                let (page, next): (Page, _) = self.json_page(call, "catalog").await?;
                Ok((page.repositories.unwrap_or_default(), next))
            }
        })
        .await
    }
}
