//! Rendering vendor files with minijinja. Built-in templates ship in the binary; an operator
//! template directory overrides them per vendor (`<vendor>.j2`, `<vendor>-common.j2`) or per
//! model (`<vendor>-<model>.j2`). A broken override is reported and the built-in is used, so one
//! bad file never takes down another vendor or leaves a phone without a file.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use super::context::PhoneContext;
use super::vendor::{FileFormat, VendorDescriptor, Vendors};

/// The built-in templates, by file name.
const BUILTIN: [(&str, &str); 11] = [
    ("yealink.cfg.j2", include_str!("templates/yealink.cfg.j2")),
    (
        "yealink-common.cfg.j2",
        include_str!("templates/yealink-common.cfg.j2"),
    ),
    ("snom.xml.j2", include_str!("templates/snom.xml.j2")),
    ("snom-common.xml.j2", include_str!("templates/snom-common.xml.j2")),
    ("grandstream.xml.j2", include_str!("templates/grandstream.xml.j2")),
    (
        "grandstream-common.xml.j2",
        include_str!("templates/grandstream-common.xml.j2"),
    ),
    ("fanvil.cfg.j2", include_str!("templates/fanvil.cfg.j2")),
    (
        "fanvil-common.cfg.j2",
        include_str!("templates/fanvil-common.cfg.j2"),
    ),
    ("poly.cfg.j2", include_str!("templates/poly.cfg.j2")),
    ("poly-common.cfg.j2", include_str!("templates/poly-common.cfg.j2")),
    ("gigaset.xml.j2", include_str!("templates/gigaset.xml.j2")),
];

/// Why a file could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("rendering {template}: {reason}")]
pub struct RenderError {
    /// The template.
    pub template: String,
    /// What went wrong.
    pub reason: String,
}

/// Templates ready to render.
pub struct Renderer {
    /// Built-ins and the overrides that compiled.
    env: Environment<'static>,
    /// Override template names: (vendor, model or "" or "common") → name in `env`.
    overrides: HashMap<(String, String), String>,
    /// Problems found while loading overrides, for the operator.
    problems: Vec<String>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("overrides", &self.overrides)
            .finish()
    }
}

fn escape_for(format: FileFormat) -> AutoEscape {
    match format {
        FileFormat::Xml => AutoEscape::Html,
        FileFormat::KeyValue | FileFormat::Fanvil => AutoEscape::None,
    }
}

impl Renderer {
    /// Built-in templates plus the overrides in `override_dir` (if any).
    pub fn new(vendors: &Vendors, override_dir: Option<&Path>) -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Escaping follows the vendor's format, not the file name, so overrides named `.j2`
        // still escape XML.
        let formats: HashMap<String, FileFormat> =
            vendors.all().iter().map(|v| (v.name.clone(), v.format)).collect();
        env.set_auto_escape_callback(move |name| {
            let vendor = name
                .trim_start_matches("override:")
                .split(['.', '-'])
                .next()
                .unwrap_or_default();
            formats.get(vendor).map_or(AutoEscape::None, |f| escape_for(*f))
        });
        // XML needs only its five characters escaped; the HTML escaper would also turn `/` into
        // `&#x2f;`, valid XML but needlessly hard on a phone's parser.
        env.set_formatter(|out, state, value| {
            if matches!(state.auto_escape(), AutoEscape::Html) && !value.is_safe() {
                let text = value.to_string();
                for c in text.chars() {
                    match c {
                        '&' => out.write_str("&amp;")?,
                        '<' => out.write_str("&lt;")?,
                        '>' => out.write_str("&gt;")?,
                        '"' => out.write_str("&quot;")?,
                        '\'' => out.write_str("&apos;")?,
                        // XML 1.0 forbids the other control characters (a PBX's name may
                        // carry one); no phone shows them.
                        c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
                        c => out.write_char(c)?,
                    }
                }
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        for (name, source) in BUILTIN {
            // Built-ins are part of the source and covered by tests.
            if let Err(e) = env.add_template(name, source) {
                unreachable!("built-in template {name}: {e}");
            }
        }
        let mut renderer = Renderer {
            env,
            overrides: HashMap::new(),
            problems: Vec::new(),
        };
        if let Some(dir) = override_dir {
            renderer.load_overrides(vendors, dir);
        }
        renderer
    }

    fn load_overrides(&mut self, vendors: &Vendors, dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems
                    .push(format!("template directory {}: {e}", dir.display()));
                return;
            }
        };
        for entry in entries.map_while(Result::ok) {
            let path = entry.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            let Some(stem) = file.strip_suffix(".j2") else {
                continue;
            };
            let (vendor, variant) = stem.split_once('-').unwrap_or((stem, ""));
            if vendors.by_name(vendor).is_none() {
                self.problems
                    .push(format!("template {}: no vendor named {vendor:?}", path.display()));
                continue;
            }
            let source = match std::fs::read_to_string(&path) {
                Ok(source) => source,
                Err(e) => {
                    self.problems.push(format!("template {}: {e}", path.display()));
                    continue;
                }
            };
            let name = format!("override:{file}");
            match self.env.add_template_owned(name.clone(), source) {
                Ok(()) => {
                    self.overrides
                        .insert((vendor.to_string(), variant.to_string()), name);
                }
                Err(e) => self.problems.push(format!(
                    "template {}: {e}; the built-in {vendor} template is used instead",
                    path.display()
                )),
            }
        }
    }

    /// Vendors whose phone file has no template: neither a built-in of that name nor an
    /// operator override `<vendor>.j2` (a vendor added by the operator's catalogue needs one).
    pub fn missing_templates(&self, vendors: &Vendors) -> Vec<String> {
        vendors
            .all()
            .iter()
            .filter(|v| {
                let builtin = self.env.get_template(&v.template).is_ok();
                let override_ = self.overrides.contains_key(&(v.name.clone(), String::new()));
                !builtin && !override_
            })
            .map(|v| {
                format!(
                    "vendor {}: no template {:?} and no {}.j2 in provisioning.template_dir",
                    v.name, v.template, v.name
                )
            })
            .collect()
    }

    /// Problems with the operator's templates (empty when all is well).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Renders `vendor`'s per-phone file.
    pub fn render_phone(&self, vendor: &VendorDescriptor, ctx: &PhoneContext) -> Result<String, RenderError> {
        let variant = if ctx.model.is_empty() {
            None
        } else {
            Some(ctx.model.as_str())
        };
        self.render_with_fallback(vendor, variant, "", &vendor.template, ctx)
    }

    /// Renders `vendor`'s model-wide file (no secrets in the context it is given).
    pub fn render_common(
        &self,
        vendor: &VendorDescriptor,
        ctx: &PhoneContext,
    ) -> Result<String, RenderError> {
        self.render_with_fallback(vendor, None, "common", &vendor.common_template, ctx)
    }

    fn render_with_fallback(
        &self,
        vendor: &VendorDescriptor,
        model: Option<&str>,
        variant: &str,
        builtin: &str,
        ctx: &PhoneContext,
    ) -> Result<String, RenderError> {
        let key = |v: &str| (vendor.name.clone(), v.to_string());
        let chosen = model
            .and_then(|m| self.overrides.get(&key(m)))
            .or_else(|| self.overrides.get(&key(variant)));
        if let Some(name) = chosen {
            match self.render_named(name, ctx) {
                Ok(text) => return Ok(text),
                Err(e) => log::error!(
                    "phone {}: {e}; using the built-in {} template",
                    ctx.mac,
                    vendor.name
                ),
            }
        }
        self.render_named(builtin, ctx)
    }

    fn render_named(&self, name: &str, ctx: &PhoneContext) -> Result<String, RenderError> {
        let error = |e: minijinja::Error| RenderError {
            template: name.to_string(),
            reason: e.to_string(),
        };
        let template = self.env.get_template(name).map_err(error)?;
        let mut text = template
            .render(minijinja::value::Value::from(minijinja::value::Serde(ctx)))
            .map_err(error)?;
        // minijinja drops the template's final newline; every vendor format wants one.
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}
