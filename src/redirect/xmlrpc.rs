//! XML-RPC (the Yealink RPS, Fanvil FDPS, Gigaset and legacy Snom redirect APIs), client side:
//! a `methodCall` with string, int and boolean parameters, and its `methodResponse` read
//! into a [`Value`] or a fault (specification: xmlrpc.com/spec.md, "Request example",
//! "Response example", "Fault example").

use crate::provisioning::phonebook::xml_escape;

/// A parameter or a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<string>` (also an untyped `<value>`).
    Str(String),
    /// `<int>` / `<i4>`.
    Int(i64),
    /// `<boolean>` 0 or 1.
    Bool(bool),
    /// `<double>`.
    Double(f64),
    /// `<struct>`: members in order.
    Struct(Vec<(String, Value)>),
    /// `<array>`.
    Array(Vec<Value>),
    /// Any other scalar (`dateTime.iso8601`, `base64`, `nil`), as its text.
    Other(String),
}

impl Value {
    /// The member `name` of a struct.
    pub fn member(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct(members) => members.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as text (strings, numbers and booleans as written).
    pub fn text(&self) -> String {
        match self {
            Value::Str(s) | Value::Other(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => (if *b { "1" } else { "0" }).into(),
            Value::Double(d) => d.to_string(),
            Value::Struct(_) | Value::Array(_) => String::new(),
        }
    }

    /// Whether the value means yes: `true`, a non-zero number, or the text `true`/`1`.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Str(s) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1"),
            _ => false,
        }
    }
}

fn encode_value(value: &Value, out: &mut String) {
    out.push_str("<value>");
    match value {
        Value::Str(s) | Value::Other(s) => {
            out.push_str("<string>");
            out.push_str(&xml_escape(s));
            out.push_str("</string>");
        }
        Value::Int(i) => out.push_str(&format!("<int>{i}</int>")),
        Value::Bool(b) => out.push_str(&format!("<boolean>{}</boolean>", u8::from(*b))),
        Value::Double(d) => out.push_str(&format!("<double>{d}</double>")),
        Value::Struct(members) => {
            out.push_str("<struct>");
            for (name, member) in members {
                out.push_str("<member><name>");
                out.push_str(&xml_escape(name));
                out.push_str("</name>");
                encode_value(member, out);
                out.push_str("</member>");
            }
            out.push_str("</struct>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for item in items {
                encode_value(item, out);
            }
            out.push_str("</data></array>");
        }
    }
    out.push_str("</value>");
}

/// The body of a call of `method` with `params`.
pub fn method_call(method: &str, params: &[Value]) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<methodCall><methodName>");
    out.push_str(&xml_escape(method));
    out.push_str("</methodName><params>");
    for param in params {
        out.push_str("<param>");
        encode_value(param, &mut out);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    out
}

/// A call of `method` with string `params` to `url` as the account `user` (HTTP Basic with
/// `password` as the service takes it): the form Yealink RPS, Fanvil FDPS and Gigaset share.
pub fn basic_call(
    url: &str,
    (user, password): (&str, &str),
    method: &str,
    params: Vec<Value>,
) -> super::HttpCall {
    super::HttpCall {
        method: "POST",
        url: url.to_string(),
        headers: vec![
            ("Content-Type".into(), "text/xml".into()),
            ("Authorization".into(), super::basic_auth(user, password)),
        ],
        body: method_call(method, &params).into_bytes(),
    }
}

/// The answer those services give every call: an array of a boolean and a text (typed or
/// not), read into both; or the verdict when it is no such answer (an HTTP failure, a fault,
/// or something else: an outage page is tried again).
pub fn boolean_and_text(reply: &super::HttpReply, service: &str) -> Result<(bool, String), super::Verdict> {
    use super::Verdict;
    if let Some(verdict) = super::status_verdict(reply, service) {
        return Err(verdict);
    }
    match parse_response(&reply.text()) {
        Ok(Response::Result(Value::Array(items))) => {
            let ok = items.first().is_some_and(Value::truthy);
            let text = items.get(1).map(Value::text).unwrap_or_default();
            Ok((ok, text.trim().to_string()))
        }
        Ok(Response::Result(other)) => Err(Verdict::Retry(format!(
            "{service} answered {other:?}, not [boolean, text]"
        ))),
        Ok(Response::Fault { code, message }) => Err(Verdict::Refused(format!(
            "{service} fault {code}: {message} (check the [redirect.{service}] account)"
        ))),
        Err(e) => Err(Verdict::Retry(format!("{service}: {e}"))),
    }
}

/// The method name and every `<string>` of a call, in order, read with roxmltree rather than
/// this module's own code: what the adapters' tests compare with the documented calls.
#[cfg(test)]
pub(crate) fn call_strings(call: &super::HttpCall) -> (String, Vec<String>) {
    let body = String::from_utf8(call.body.clone()).expect("utf-8");
    let doc = roxmltree::Document::parse(&body).expect("xml");
    let text = |name: &str| -> Vec<String> {
        doc.descendants()
            .filter(|n| n.has_tag_name(name))
            .map(|n| n.text().unwrap_or_default().to_string())
            .collect()
    };
    (text("methodName").concat(), text("string"))
}

/// What a `methodResponse` said.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// The one result parameter (a response without one: an empty string).
    Result(Value),
    /// `<fault>` with its `faultCode` and `faultString`.
    Fault {
        /// `faultCode`.
        code: i64,
        /// `faultString`.
        message: String,
    },
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an XML-RPC response: {0}")]
pub struct NotXmlRpc(pub String);

/// Nesting deeper than this is refused: a response is read from a peer.
const MAX_DEPTH: usize = 32;

fn decode_value(node: roxmltree::Node<'_, '_>, depth: usize) -> Result<Value, NotXmlRpc> {
    if depth > MAX_DEPTH {
        return Err(NotXmlRpc("values nested too deep".into()));
    }
    let Some(typed) = node.children().find(|c| c.is_element()) else {
        return Ok(Value::Str(node.text().unwrap_or_default().to_string()));
    };
    let text = || typed.text().unwrap_or_default().trim().to_string();
    let number = |t: String| {
        t.parse::<i64>()
            .map_err(|_| NotXmlRpc(format!("<{}> {t:?} is no integer", typed.tag_name().name())))
    };
    Ok(match typed.tag_name().name() {
        "string" => Value::Str(typed.text().unwrap_or_default().to_string()),
        "int" | "i4" | "i8" => Value::Int(number(text())?),
        "boolean" => Value::Bool(text() == "1"),
        "double" => Value::Double(
            text()
                .parse()
                .map_err(|_| NotXmlRpc(format!("<double> {:?}", text())))?,
        ),
        "struct" => Value::Struct(
            typed
                .children()
                .filter(|c| c.has_tag_name("member"))
                .map(|m| {
                    let name = m
                        .children()
                        .find(|c| c.has_tag_name("name"))
                        .and_then(|n| n.text())
                        .unwrap_or_default()
                        .to_string();
                    let value = m
                        .children()
                        .find(|c| c.has_tag_name("value"))
                        .ok_or_else(|| NotXmlRpc(format!("member {name:?} without a value")))?;
                    Ok((name, decode_value(value, depth + 1)?))
                })
                .collect::<Result<_, NotXmlRpc>>()?,
        ),
        "array" => Value::Array(
            typed
                .children()
                .filter(|c| c.has_tag_name("data"))
                .flat_map(|d| d.children().filter(|c| c.has_tag_name("value")))
                .map(|v| decode_value(v, depth + 1))
                .collect::<Result<_, NotXmlRpc>>()?,
        ),
        _ => Value::Other(text()),
    })
}

/// Reads a `methodResponse`.
pub fn parse_response(body: &str) -> Result<Response, NotXmlRpc> {
    let doc = roxmltree::Document::parse(body).map_err(|e| NotXmlRpc(e.to_string()))?;
    let root = doc.root_element();
    if !root.has_tag_name("methodResponse") {
        return Err(NotXmlRpc(format!("root <{}>", root.tag_name().name())));
    }
    if let Some(fault) = root.children().find(|c| c.has_tag_name("fault")) {
        let value = fault
            .children()
            .find(|c| c.has_tag_name("value"))
            .ok_or_else(|| NotXmlRpc("a fault without a value".into()))?;
        let value = decode_value(value, 0)?;
        let code = match value.member("faultCode") {
            Some(Value::Int(code)) => *code,
            Some(other) => other.text().trim().parse().unwrap_or(0),
            None => 0,
        };
        let message = value.member("faultString").map(Value::text).unwrap_or_default();
        return Ok(Response::Fault { code, message });
    }
    let value = root
        .children()
        .find(|c| c.has_tag_name("params"))
        .and_then(|p| p.children().find(|c| c.has_tag_name("param")))
        .and_then(|p| p.children().find(|c| c.has_tag_name("value")));
    match value {
        Some(value) => Ok(Response::Result(decode_value(value, 0)?)),
        None => Ok(Response::Result(Value::Str(String::new()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_written_as_the_specification_shows() {
        let body = method_call(
            "redirect.registerDevice",
            &[
                Value::Str("001565AABBCC".into()),
                Value::Str("a<b&c".into()),
                Value::Bool(true),
            ],
        );
        assert_eq!(
            body,
            "<?xml version=\"1.0\"?>\n<methodCall><methodName>redirect.registerDevice</methodName><params><param><value><string>001565AABBCC</string></value></param><param><value><string>a&lt;b&amp;c</string></value></param><param><value><boolean>1</boolean></value></param></params></methodCall>\n"
        );
        roxmltree::Document::parse(&body).expect("well-formed");
    }

    #[test]
    fn results_and_faults_read_from_the_specifications_examples() {
        // xmlrpc.com/spec.md's response and fault examples, in our own words.
        let ok = "<?xml version=\"1.0\"?><methodResponse><params><param><value><string>South Dakota</string></value></param></params></methodResponse>";
        assert_eq!(
            parse_response(ok),
            Ok(Response::Result(Value::Str("South Dakota".into())))
        );
        let fault = "<?xml version=\"1.0\"?><methodResponse><fault><value><struct><member><name>faultCode</name><value><int>4</int></value></member><member><name>faultString</name><value><string>Too many parameters.</string></value></member></struct></value></fault></methodResponse>";
        assert_eq!(
            parse_response(fault),
            Ok(Response::Fault {
                code: 4,
                message: "Too many parameters.".into()
            })
        );
        let untyped = "<methodResponse><params><param><value>plain</value></param></params></methodResponse>";
        assert_eq!(
            parse_response(untyped),
            Ok(Response::Result(Value::Str("plain".into())))
        );
        let nested = "<methodResponse><params><param><value><array><data><value><struct><member><name>ok</name><value><boolean>1</boolean></value></member></struct></value></data></array></value></param></params></methodResponse>";
        let Ok(Response::Result(Value::Array(items))) = parse_response(nested) else {
            panic!("array");
        };
        assert!(items[0].member("ok").is_some_and(Value::truthy));
        assert!(parse_response("<html>502</html>").is_err());
        assert!(parse_response("not xml").is_err());
        let deep = format!(
            "<methodResponse><params><param>{}{}</param></params></methodResponse>",
            "<value><array><data>".repeat(40),
            "</data></array></value>".repeat(40)
        );
        assert!(parse_response(&deep).is_err(), "bounded nesting");
    }
}
