//! `rex asynctask-dashboard` for end-to-end tests: started on a free port, and spoken to over
//! plain HTTP/1.1 (one request per connection), without a browser.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::{Project, Running};

const WAIT: Duration = Duration::from_secs(60);

/// A running console and its base URL (`http://ADDR`).
pub struct Dashboard {
    pub process: Running,
    pub url: String,
}

impl Dashboard {
    /// `rex asynctask-dashboard --bind=127.0.0.1:0 <extra>` in `project`.
    pub fn start(project: &Project, extra: &[&str]) -> Dashboard {
        let mut args = vec!["asynctask-dashboard", "--bind=127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut process = Running::spawn(project.rex(&args));
        let line = process.wait_for(WAIT, |l| l.contains("listening on http://"));
        let url = line
            .split("listening on ")
            .nth(1)
            .expect("the address")
            .trim()
            .trim_end_matches('/')
            .to_string();
        Dashboard { process, url }
    }

    /// `GET path`: the body, once the status is 200.
    pub fn get(&self, path: &str) -> String {
        let (status, body) = self.request("GET", path, &[], "");
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `POST path` with a JSON body and the console's CSRF token (read from a page): the
    /// body, once the status is 200.
    pub fn post(&self, path: &str, json: &str) -> String {
        let page = self.get("/failed");
        let csrf = page
            .split(r#"name="csrf" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a page's CSRF field")
            .to_string();
        let headers = [
            ("X-CSRF-Token", csrf.as_str()),
            ("Content-Type", "application/json"),
        ];
        let (status, body) = self.request("POST", path, &headers, json);
        assert_eq!(status, 200, "POST {path}: {body}");
        body
    }

    /// One request; (status, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).expect("connect to the console");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        (status, body.to_string())
    }
}
