//! `keel serve` driven over real HTTP: the real binary on an ephemeral port,
//! on SQLite and on PostgreSQL, each test with a database of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_tests::TestDatabase;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A running `keel serve`; killed when dropped.
struct Server {
    child: Child,
    base: String,
    address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[])
    }

    /// `keel serve` with extra options (timeouts, limits).
    fn start_with(database_url: &str, options: &[&str]) -> Self {
        Self::start_logging(database_url, options, "info")
    }

    /// `keel serve` with extra options and `RUST_LOG=rust_log`.
    fn start_logging(database_url: &str, options: &[&str], rust_log: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(options)
            .env("DATABASE_URL", database_url)
            // With replicas: a read waits long enough for the standby to
            // replay the write, also on a loaded CI machine.
            .env("KEEL_REPLICA_WAIT_MS", "100")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keel serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = address_tx.send(address);
                }
                lines.lock().expect("log").push(line);
            }
        });
        let address = address_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("keel serve did not start: {:?}", log.lock().expect("log")));
        Self {
            child,
            base: format!("http://{address}"),
            address,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// Whether a log line matching `line` arrives within 5 s: the server
    /// writes it as it answers, and the reader thread may not have it yet.
    async fn logged(&self, line: impl Fn(&str) -> bool) -> bool {
        for _ in 0..100 {
            if self.log().iter().any(|l| line(l)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// [`Server::logged`] for tests without a runtime.
    fn logged_within(&self, line: impl Fn(&str) -> bool) -> bool {
        (0..100).any(|_| {
            let seen = self.log().iter().any(|l| line(l));
            if !seen {
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn query_count(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("x-query-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("X-Query-Count header")
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

fn user_body(n: u32) -> Value {
    json!({
        "email": format!("user{n}@example.com"),
        "full_name": format!("First{n} Last{n}"),
        "first_name": format!("First{n}"),
        "last_name": format!("Last{n}"),
        "is_active": true,
    })
}

async fn create_user(http: &reqwest::Client, server: &Server, n: u32) -> Value {
    let response = http
        .post(server.url("/users"))
        .json(&user_body(n))
        .send()
        .await
        .expect("POST /users");
    assert_eq!(response.status(), StatusCode::CREATED);
    json_of(response).await
}

/// Each test body runs against SQLite and PostgreSQL, with `$server` started
/// on a fresh database and `$http` a client.
macro_rules! serve_tests {
    ($( async fn $name:ident($server:ident, $http:ident) $body:block )*) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test] async fn $name() {
                let fixture = keel_tests::SqliteTestDatabase::create();
                let $server = Server::start(fixture.database_url().as_connection_str());
                let $http = reqwest::Client::new();
                $body
            } )*
        }
        mod postgres {
            use super::*;
            $( #[tokio::test] async fn $name() {
                let Some(fixture) = keel_tests::PgTestDatabase::create() else { return };
                let $server = Server::start(fixture.database_url().as_connection_str());
                let $http = reqwest::Client::new();
                $body
            } )*
        }
    };
}

serve_tests! {
    async fn users_are_created_read_changed_and_deleted(server, http) {
        let user = create_user(&http, &server, 1).await;
        let id = user["id"].as_i64().expect("id");

        let got = http.get(server.url(&format!("/users/{id}"))).send().await.expect("GET");
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(query_count(&got), 1);
        assert_eq!(json_of(got).await, user);
        let created_at = user["created_at"].as_str().expect("created_at is a string");
        let parsed = chrono::DateTime::parse_from_rfc3339(created_at).expect("RFC 3339");
        assert!(created_at.ends_with('Z'), "UTC, marked as such: {created_at}");
        let age = chrono::Utc::now().signed_duration_since(parsed).num_seconds().abs();
        assert!(age < 600, "created_at {created_at} is UTC now");

        let minimal = http
            .post(server.url("/users"))
            .json(&json!({ "email": "minimal@example.com", "full_name": "Only Required" }))
            .send()
            .await
            .expect("POST /users with the required fields only");
        assert_eq!(minimal.status(), StatusCode::CREATED);
        let minimal = json_of(minimal).await;
        assert_eq!(minimal["is_active"], true, "is_active defaults to true");
        assert_eq!(minimal["first_name"], Value::Null);

        let by_email = http.get(server.url("/users/by-email/user1@example.com")).send().await.expect("GET");
        assert_eq!(json_of(by_email).await["id"], id);

        let patched = http
            .patch(server.url(&format!("/users/{id}")))
            .json(&json!({ "full_name": "Renamed", "first_name": null }))
            .send()
            .await
            .expect("PATCH");
        assert_eq!(patched.status(), StatusCode::OK);
        let patched = json_of(patched).await;
        assert_eq!(patched["full_name"], "Renamed");
        assert_eq!(patched["first_name"], Value::Null);
        assert_eq!(patched["last_name"], "Last1", "absent fields stay as they were");

        let post = http
            .post(server.url(&format!("/users/{id}/posts")))
            .json(&json!({ "title": "hello", "content": "world" }))
            .send()
            .await
            .expect("POST post");
        assert_eq!(post.status(), StatusCode::CREATED);
        let post_id = json_of(post).await["id"].as_i64().expect("post id");

        let deleted = http.delete(server.url(&format!("/users/{id}"))).send().await.expect("DELETE");
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        let gone = http.get(server.url(&format!("/users/{id}"))).send().await.expect("GET");
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        assert_eq!(json_of(gone).await["error"]["code"], "not_found");
        let post_gone = http.get(server.url(&format!("/posts/{post_id}"))).send().await.expect("GET");
        assert_eq!(post_gone.status(), StatusCode::NOT_FOUND, "the user's posts went with them");
    }

    async fn includes_load_one_statement_per_level(server, http) {
        let user = create_user(&http, &server, 1).await;
        let id = user["id"].as_i64().expect("id");
        for n in 0..5 {
            let post = http
                .post(server.url(&format!("/users/{id}/posts")))
                .json(&json!({ "title": format!("p{n}"), "content": "c" }))
                .send()
                .await
                .expect("POST post");
            let post_id = json_of(post).await["id"].as_i64().expect("post id");
            for k in 0..3 {
                let comment = http
                    .post(server.url(&format!("/posts/{post_id}/comments")))
                    .json(&json!({ "body": format!("c{k}"), "author_id": id }))
                    .send()
                    .await
                    .expect("POST comment");
                assert_eq!(comment.status(), StatusCode::CREATED);
            }
        }

        let full = http.get(server.url(&format!("/users/{id}?include=posts.comments"))).send().await.expect("GET");
        assert_eq!(query_count(&full), 3, "users, posts, comments: one statement each");
        let full = json_of(full).await;
        assert_eq!(full["posts"].as_array().map(Vec::len), Some(5));
        assert_eq!(full["posts"][4]["comments"].as_array().map(Vec::len), Some(3));

        let posts = http.get(server.url(&format!("/users/{id}?include=posts"))).send().await.expect("GET");
        assert_eq!(query_count(&posts), 2);

        let post_id = full["posts"][0]["post"]["id"].as_i64().expect("post id");
        let post = http.get(server.url(&format!("/posts/{post_id}?include=author,comments"))).send().await.expect("GET");
        assert_eq!(query_count(&post), 2, "post joined to its author, then comments");
        let post = json_of(post).await;
        assert_eq!(post["author"]["id"], id);
        assert_eq!(post["comments"].as_array().map(Vec::len), Some(3));
        let joined = http.get(server.url(&format!("/posts/{post_id}?include=author"))).send().await.expect("GET");
        assert_eq!(query_count(&joined), 1);

        let by_email = http.get(server.url("/posts?author_email=user1@example.com")).send().await.expect("GET");
        assert_eq!(query_count(&by_email), 1);
        assert_eq!(json_of(by_email).await.as_array().map(Vec::len), Some(5));

        let page = json_of(http.get(server.url(&format!("/posts/{post_id}/comments?limit=2"))).send().await.expect("GET")).await;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
        let next = page["next"].as_i64().expect("next cursor");
        let rest = json_of(
            http.get(server.url(&format!("/posts/{post_id}/comments?after={next}&limit=2"))).send().await.expect("GET"),
        )
        .await;
        assert_eq!(rest["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(rest["next"], Value::Null);
    }

    async fn user_pages_follow_the_cursor(server, http) {
        for n in 1..=5 {
            create_user(&http, &server, n).await;
        }
        let mut seen = Vec::new();
        let mut url = server.url("/users?limit=2");
        loop {
            let page = json_of(http.get(&url).send().await.expect("GET")).await;
            seen.extend(page["items"].as_array().expect("items").iter().map(|u| u["id"].as_i64().expect("id")));
            match page["next"].as_i64() {
                Some(next) => url = server.url(&format!("/users?limit=2&after={next}")),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        let capped = json_of(http.get(server.url("/users?limit=100000")).send().await.expect("GET")).await;
        assert_eq!(capped["items"].as_array().map(Vec::len), Some(5), "an over-large limit is capped, not an error");
    }

    async fn bad_input_gets_the_right_status_and_a_json_error(server, http) {
        create_user(&http, &server, 1).await;
        let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
            (http.get(server.url("/users/abc")), StatusCode::BAD_REQUEST, "bad_path"),
            (http.get(server.url("/users/99999999999")), StatusCode::BAD_REQUEST, "bad_path"),
            (http.get(server.url("/users?limit=x")), StatusCode::BAD_REQUEST, "bad_query"),
            (http.get(server.url("/users?limit=0")), StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            (http.get(server.url("/users/1?include=friends")), StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            (http.get(server.url("/users/424242")), StatusCode::NOT_FOUND, "not_found"),
            (http.get(server.url("/users/-1")), StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            (http.get(server.url("/posts")), StatusCode::UNPROCESSABLE_ENTITY, "validation"),
            (http.post(server.url("/users")).json(&user_body(1)), StatusCode::CONFLICT, "conflict"),
            (
                http.post(server.url("/users")).header("content-type", "application/json").body("{\"email\": "),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (http.post(server.url("/users")).body("email=x"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            (
                http.post(server.url("/users")).json(&json!({ "email": "x@y.zz" })),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
            ),
            (
                http.post(server.url("/users")).json(&json!({ "email": "not an email", "full_name": "x", "first_name": null, "last_name": null, "is_active": true })),
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
            ),
            (
                http.post(server.url("/users/777/posts")).json(&json!({ "title": "t", "content": "c" })),
                StatusCode::UNPROCESSABLE_ENTITY,
                "related_missing",
            ),
            (
                http.post(server.url("/users")).header("content-type", "application/json").body(format!("{{\"email\": \"{}\"}}", "x".repeat(100_000))),
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
            ),
        ];
        for (request, status, code) in cases {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), status, "{code}");
            let body = json_of(response).await;
            assert_eq!(body["error"]["code"], code, "{body}");
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let users = json_of(http.get(server.url("/users")).send().await.expect("GET")).await;
        assert_eq!(users["items"].as_array().map(Vec::len), Some(1), "no bad request wrote anything");
        let invalid = json_of(
            http.post(server.url("/users"))
                .json(&json!({ "email": "bad", "full_name": "x", "first_name": null, "last_name": null, "is_active": true }))
                .send()
                .await
                .expect("POST"),
        )
        .await;
        assert_eq!(invalid["error"]["field"], "email");
    }

    async fn json_bodies_are_objects_and_nulls_are_refused(server, http) {
        let user = create_user(&http, &server, 1).await;
        let id = user["id"].as_i64().expect("id");
        // serde would read an array into the struct by position.
        let array = http.post(server.url("/users")).json(&json!(["array@x.com", "By Position", null, null, true])).send().await.expect("POST");
        assert_eq!(array.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json_of(array).await["error"]["code"], "invalid_body");
        let patch = http.patch(server.url(&format!("/users/{id}"))).json(&json!(["new@x.com", "Name"])).send().await.expect("PATCH");
        assert_eq!(patch.status(), StatusCode::UNPROCESSABLE_ENTITY);
        for field in ["email", "full_name", "is_active"] {
            let response = http.patch(server.url(&format!("/users/{id}"))).json(&json!({ field: null })).send().await.expect("PATCH");
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
            assert_eq!(json_of(response).await["error"]["field"], field);
        }
        let nullable = http.patch(server.url(&format!("/users/{id}"))).json(&json!({ "last_name": null })).send().await.expect("PATCH");
        assert_eq!(nullable.status(), StatusCode::OK, "a nullable column takes null");
        let after = json_of(http.get(server.url(&format!("/users/{id}"))).send().await.expect("GET")).await;
        assert_eq!((&after["email"], &after["full_name"]), (&user["email"], &user["full_name"]), "nothing else changed");
        let users = json_of(http.get(server.url("/users")).send().await.expect("GET")).await;
        assert_eq!(users["items"].as_array().map(Vec::len), Some(1), "the array created no user");

        let missing = http.get(server.url("/posts/999999/comments")).send().await.expect("GET");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "as GET /posts/999999 is");
        let post = http.post(server.url(&format!("/users/{id}/posts"))).json(&json!({ "title": "t", "content": "c" })).send().await.expect("POST");
        let post_id = json_of(post).await["id"].as_i64().expect("post id");
        let empty = http.get(server.url(&format!("/posts/{post_id}/comments"))).send().await.expect("GET");
        assert_eq!(empty.status(), StatusCode::OK, "a post without comments is no 404");
        assert_eq!(json_of(empty).await["items"], json!([]));
    }

    async fn racing_deletes_and_inserts_never_answer_5xx(server, http) {
        // Issue 14: DELETE user, DELETE post and POST comment racing on
        // PostgreSQL deadlocked (a cascade against the insert's foreign-key
        // locks) and the loser answered 503. Writes now run in a transaction
        // that is retried.
        let mut statuses = std::collections::BTreeMap::new();
        for round in 0..40u32 {
            let author = create_user(&http, &server, 1000 + 2 * round).await;
            let other = create_user(&http, &server, 1001 + 2 * round).await;
            let (author, other) = (author["id"].as_i64().expect("id"), other["id"].as_i64().expect("id"));
            let post = http
                .post(server.url(&format!("/users/{author}/posts")))
                .json(&json!({ "title": "race", "content": "c" }))
                .send()
                .await
                .expect("POST post");
            let post = json_of(post).await["id"].as_i64().expect("post id");
            let mut requests = Vec::new();
            requests.push(http.delete(server.url(&format!("/users/{author}"))).send());
            requests.push(http.delete(server.url(&format!("/posts/{post}"))).send());
            for n in 0..20 {
                let by = if n % 2 == 0 { author } else { other };
                requests.push(
                    http.post(server.url(&format!("/posts/{post}/comments")))
                        .json(&json!({ "body": format!("c{n}"), "author_id": by }))
                        .send(),
                );
            }
            let handles: Vec<_> = requests.into_iter().map(tokio::spawn).collect();
            for handle in handles {
                let response = handle.await.expect("task").expect("answered");
                *statuses.entry(response.status().as_u16()).or_insert(0u32) += 1;
            }
        }
        assert!(statuses.keys().all(|s| *s < 500), "{statuses:?}");
        assert_eq!(statuses.values().sum::<u32>(), 40 * 22, "{statuses:?}");
    }

    async fn a_deleted_id_is_never_handed_out_again(server, http) {
        create_user(&http, &server, 1).await;
        let newest = create_user(&http, &server, 2).await["id"].as_i64().expect("id");
        let deleted = http.delete(server.url(&format!("/users/{newest}"))).send().await.expect("DELETE");
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        let next = create_user(&http, &server, 3).await["id"].as_i64().expect("id");
        assert!(next > newest, "user {newest} was deleted, and its id came back");
        // A client retrying its DELETE on the old id hits nobody.
        let retried = http.delete(server.url(&format!("/users/{newest}"))).send().await.expect("DELETE");
        assert_eq!(retried.status(), StatusCode::NOT_FOUND);
    }

    async fn tags_and_replies_over_http(server, http) {
        let user = create_user(&http, &server, 1).await["id"].as_i64().expect("id");
        let post = |title: &'static str| {
            let http = http.clone();
            let url = server.url(&format!("/users/{user}/posts"));
            async move {
                let response = http.post(url).json(&json!({"title": title, "content": "c"})).send().await.expect("POST");
                assert_eq!(response.status(), StatusCode::CREATED);
                json_of(response).await["id"].as_i64().expect("id")
            }
        };
        let (first, second) = (post("first").await, post("second").await);
        let send = |method: reqwest::Method, path: String| http.request(method, server.url(&path)).send();
        use reqwest::Method;

        let created = http.post(server.url("/tags")).json(&json!({"name": "rust"})).send().await.expect("POST /tags");
        assert_eq!(created.status(), StatusCode::CREATED);
        let again = http.post(server.url("/tags")).json(&json!({"name": "rust"})).send().await.expect("POST /tags");
        assert_eq!(again.status(), StatusCode::CONFLICT);
        let tagged = send(Method::PUT, format!("/posts/{first}/tags/rust")).await.expect("PUT");
        assert_eq!(tagged.status(), StatusCode::CREATED);
        assert_eq!(json_of(tagged).await["name"], "rust");
        let retagged = send(Method::PUT, format!("/posts/{first}/tags/rust")).await.expect("PUT");
        assert_eq!(retagged.status(), StatusCode::OK, "tagging twice is not an error");
        for (path, status, code) in [
            (format!("/posts/{first}/tags/nope"), StatusCode::NOT_FOUND, "not_found"),
            ("/posts/99999/tags/rust".to_owned(), StatusCode::NOT_FOUND, "not_found"),
            (format!("/posts/{first}/tags/{}", "x".repeat(51)), StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ] {
            let response = send(Method::PUT, path.clone()).await.expect("PUT");
            assert_eq!(response.status(), status, "{path}");
            assert_eq!(json_of(response).await["error"]["code"], code, "{path}");
        }
        let page = json_of(send(Method::GET, "/tags/rust/posts?limit=10".into()).await.expect("GET")).await;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
        assert_eq!(page["items"][0]["id"].as_i64(), Some(first));
        assert_eq!(send(Method::GET, "/tags/nope/posts".into()).await.expect("GET").status(), StatusCode::NOT_FOUND);

        // A thread: a comment, a reply to it; a reply across posts is refused.
        let comment = |post_id: i64, parent: Option<i64>| {
            http.post(server.url(&format!("/posts/{post_id}/comments")))
                .json(&json!({"body": "b", "author_id": user, "parent_id": parent}))
                .send()
        };
        let root = json_of(comment(first, None).await.expect("POST")).await["id"].as_i64().expect("id");
        let reply = comment(first, Some(root)).await.expect("POST");
        assert_eq!(reply.status(), StatusCode::CREATED);
        let reply = json_of(reply).await;
        assert_eq!(reply["parent_id"].as_i64(), Some(root));
        let across = comment(second, Some(root)).await.expect("POST");
        assert_eq!(across.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json_of(across).await["error"]["field"], "parent_id");

        let response = send(Method::GET, format!("/posts/{first}?include=author,tags,comments.replies")).await.expect("GET");
        assert_eq!(query_count(&response), 3, "post ⋈ author, the thread, the tags");
        let body = json_of(response).await;
        assert_eq!(body["author"]["id"].as_i64(), Some(user));
        assert_eq!(body["tags"][0]["name"], "rust");
        assert_eq!(body["comments"][0]["comment"]["id"].as_i64(), Some(root));
        assert_eq!(body["comments"][0]["replies"][0]["comment"]["id"], reply["id"]);
        let shallow = json_of(send(Method::GET, format!("/posts/{first}?include=comments.replies&depth=1")).await.expect("GET")).await;
        assert_eq!(shallow["comments"][0]["replies"].as_array().map(Vec::len), Some(0));
        for query in ["include=comments.replies&depth=33", "include=comments.replies&depth=0", "depth=2"] {
            let response = send(Method::GET, format!("/posts/{first}?{query}")).await.expect("GET");
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        }

        let response = send(Method::GET, format!("/users/{user}?include=posts.tags")).await.expect("GET");
        assert_eq!(query_count(&response), 3);
        let body = json_of(response).await;
        assert_eq!(body["posts"][0]["tags"][0]["name"], "rust");
        assert_eq!(body["posts"][1]["tags"].as_array().map(Vec::len), Some(0));

        for _ in 0..2 {
            let untagged = send(Method::DELETE, format!("/posts/{first}/tags/rust")).await.expect("DELETE");
            assert_eq!(untagged.status(), StatusCode::NO_CONTENT, "untagging twice is not an error");
        }
        let body = json_of(send(Method::GET, format!("/posts/{first}?include=tags")).await.expect("GET")).await;
        assert_eq!(body["tags"].as_array().map(Vec::len), Some(0));
    }

    async fn a_post_with_1000_comments_costs_the_statements_of_one_with_1(server, http) {
        let user = create_user(&http, &server, 1).await["id"].as_i64().expect("id");
        let mut posts = Vec::new();
        for title in ["small", "large"] {
            let response = http.post(server.url(&format!("/users/{user}/posts")))
                .json(&json!({"title": title, "content": "c"})).send().await.expect("POST");
            posts.push(json_of(response).await["id"].as_i64().expect("id"));
        }
        let add = |post_id: i64, parent: Option<i64>| {
            http.post(server.url(&format!("/posts/{post_id}/comments")))
                .json(&json!({"body": "b", "author_id": user, "parent_id": parent}))
                .send()
        };
        add(posts[0], None).await.expect("POST");
        // 1,000 comments on the large post: every fifth starts a chain, the
        // others reply to the one before.
        let mut previous = None;
        for n in 0..1000 {
            let parent = if n % 5 == 0 { None } else { previous };
            let response = add(posts[1], parent).await.expect("POST");
            assert_eq!(response.status(), StatusCode::CREATED);
            previous = json_of(response).await["id"].as_i64();
        }
        let mut counts = Vec::new();
        for post in &posts {
            let response = http.get(server.url(&format!("/posts/{post}?include=author,tags,comments.replies")))
                .send().await.expect("GET");
            assert_eq!(response.status(), StatusCode::OK);
            counts.push(query_count(&response));
            let body = json_of(response).await;
            let roots = body["comments"].as_array().map(Vec::len).unwrap_or_default();
            assert_eq!(roots, if *post == posts[0] { 1 } else { 200 });
        }
        assert_eq!(counts, [3, 3], "X-Query-Count for 1 comment and for 1,000");
    }

    async fn unknown_paths_and_methods_get_json_errors(server, http) {
        for path in ["/", "/users/", "//users", "/users/1/", "/nothing/here"] {
            let response = http.get(server.url(path)).send().await.expect("GET");
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(response.headers().contains_key("x-query-count"), "{path}");
            assert_eq!(json_of(response).await["error"]["code"], "not_found", "{path}");
        }
        for method in ["PUT", "OPTIONS", "TRACE", "BREW"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let response = http.request(method.clone(), server.url("/users")).send().await.expect("request");
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
            let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            assert!(allow.contains("GET") && allow.contains("POST"), "{method}: Allow {allow:?}");
            assert_eq!(json_of(response).await["error"]["code"], "method_not_allowed", "{method}");
        }
    }

    async fn metrics_stay_bounded_whatever_the_methods_and_paths(server, http) {
        // 10,000 requests, each with a method and a path of its own: before,
        // each method became a label of its own and the output grew without
        // end (issue 14 measured 85 MB after 25,000).
        let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
        for n in 0..10_000u32 {
            let method = if n % 3 == 0 {
                format!("M{n:0>40}")
            } else {
                methods[n as usize % methods.len()].to_owned()
            };
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let path = format!("/random/{n}/{}", "x".repeat((n % 50) as usize));
            let response = http.request(method, server.url(&path)).send().await.expect("answered");
            assert!(response.status().is_client_error(), "{}", response.status());
        }
        let metrics = http.get(server.url("/metrics")).send().await.expect("GET").text().await.expect("text");
        // Fixed label sets: 8 methods x (routes + unmatched) x a few statuses.
        assert!(metrics.len() < 64 * 1024, "{} bytes:\n{metrics}", metrics.len());
        assert!(!metrics.contains("/random/"), "paths are not labels");
        assert!(metrics.contains("route=\"unmatched\""), "{metrics}");
        assert!(metrics.contains("method=\"other\""), "{metrics}");
    }

    async fn health_and_metrics_report_the_service(server, http) {
        let health = http.get(server.url("/healthz")).send().await.expect("GET");
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(json_of(health).await["pending_migrations"], 0);
        create_user(&http, &server, 1).await;
        let metrics = http.get(server.url("/metrics")).send().await.expect("GET").text().await.expect("text");
        assert!(
            metrics.contains("keel_http_requests_total{method=\"POST\",route=\"/users\",status=\"201\"} 1"),
            "{metrics}"
        );
        assert!(metrics.contains("keel_http_request_duration_seconds_bucket"), "{metrics}");
        assert!(metrics.contains("keel_db_statements_total"), "{metrics}");
        for gauge in ["keel_db_pool_max_size 10", "keel_db_pool_size ", "keel_db_pool_idle ", "keel_db_pool_waiting 0", "keel_db_pool_checkouts_total "] {
            assert!(metrics.contains(gauge), "{gauge} in {metrics}");
        }
        let checkouts: i64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("keel_db_pool_checkouts_total "))
            .and_then(|n| n.trim().parse().ok())
            .expect("checkouts");
        assert!(checkouts >= 1, "the POST checked a connection out: {checkouts}");
        let logged = server.logged(|l| l.contains("request") && l.contains("/users") && l.contains("statements=1")).await;
        assert!(logged, "one log line per request with its statements: {:?}", server.log());
    }
}

/// A body declared over the limit is refused at once, before the client
/// sends any of it (before, the 413 came only after 64 KiB had arrived, so
/// this client, which sends none, waited forever).
#[test]
fn a_declared_oversize_body_is_refused_before_it_is_sent() {
    let fixture = keel_tests::SqliteTestDatabase::create();
    let server = Server::start(fixture.database_url().as_connection_str());
    let mut stream = TcpStream::connect(&server.address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    stream
        .write_all(
            b"POST /users HTTP/1.1\r\nHost: keel\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
        )
        .expect("send the head only");
    let mut head = [0u8; 512];
    let read = stream
        .read(&mut head)
        .expect("an answer without sending the body");
    let head = String::from_utf8_lossy(&head[..read]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-query-count: 0"),
        "{head}"
    );
}

/// SIGTERM while a request is half-sent: the server finishes that request,
/// then exits 0.
#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let fixture = keel_tests::SqliteTestDatabase::create();
    let mut server = Server::start(fixture.database_url().as_connection_str());
    let body = user_body(1).to_string();
    let mut stream = TcpStream::connect(&server.address).expect("connect");
    write!(
        stream,
        "POST /users HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.address,
        body.len()
    )
    .expect("headers");
    stream
        .write_all(&body.as_bytes()[..10])
        .expect("part of the body");
    std::thread::sleep(Duration::from_millis(200));

    let killed = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(200));
    stream
        .write_all(&body.as_bytes()[10..])
        .expect("rest of the body");

    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let status = server.child.wait().expect("exit");
    assert!(status.success(), "exit status {status}");
    // The reader thread may still be draining the pipe the server closed.
    assert!(
        server.logged_within(|l| l.contains("closing the database pool")),
        "{:?}",
        server.log()
    );
}

/// Slow, stalled and numerous clients: each is bounded by a timeout or the
/// connection cap, and none keeps the server from answering or stopping.
mod slow_clients {
    use std::time::Instant;

    use super::*;

    /// Sends SIGTERM and waits for the exit, at most `within`.
    fn terminate(server: &mut Server, within: Duration) -> (std::process::ExitStatus, Duration) {
        let signalled = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        loop {
            if let Some(status) = server.child.try_wait().expect("wait") {
                return (status, signalled.elapsed());
            }
            assert!(
                signalled.elapsed() < within,
                "still running {within:?} after SIGTERM: {:?}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(server: &Server) -> TcpStream {
        let stream = TcpStream::connect(&server.address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream
    }

    /// A whole GET on a connection of its own; the response as text.
    fn get(server: &Server, path: &str) -> String {
        let mut stream = connect(server);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        response
    }

    /// A POST /users whose body stops after 10 of its bytes.
    fn half_sent_post(server: &Server) -> TcpStream {
        let mut stream = connect(server);
        let body = user_body(1).to_string();
        write!(
            stream,
            "POST /users HTTP/1.1\r\nHost: keel\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        )
        .expect("half a request");
        stream
    }

    /// The whole log of a server asked `requests` times for a user that
    /// does not exist (each a 404), then stopped with SIGTERM.
    fn log_of_missing_users(server: &mut Server, requests: usize) -> Vec<String> {
        for _ in 0..requests {
            let response = get(server, "/users/1");
            assert!(response.starts_with("HTTP/1.1 404"), "{response}");
        }
        let (status, _) = terminate(server, Duration::from_secs(8));
        assert!(status.success(), "exit status {status}");
        assert!(
            server.logged_within(|l| l.contains("closing the database pool")),
            "{:?}",
            server.log()
        );
        server.log()
    }

    /// Log lines are written by a thread of their own (through a queue):
    /// none is lost when the server stops right after answering, and they
    /// keep their order.
    #[test]
    fn every_request_is_logged_before_the_server_exits() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let mut server = Server::start(fixture.database_url().as_connection_str());
        let log = log_of_missing_users(&mut server, 200);
        let requests: Vec<usize> = log
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.contains(" request ") && l.contains("path=/users/1") && l.contains("status=404")
            })
            .map(|(at, _)| at)
            .collect();
        assert_eq!(requests.len(), 200, "{log:?}");
        let closing = log
            .iter()
            .position(|l| l.contains("closing the database pool"))
            .unwrap_or(0);
        assert!(
            requests.iter().all(|&at| at < closing),
            "a request line after the last line: {log:?}"
        );
    }

    /// The access log has a target of its own: filtered off, no request
    /// has its line, and every other line stays, a request's warning
    /// included.
    #[test]
    fn the_access_log_can_be_turned_off_alone() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let mut server = Server::start_logging(
            fixture.database_url().as_connection_str(),
            &["--statement-budget", "0"],
            "info,keel::serve::access=off",
        );
        let log = log_of_missing_users(&mut server, 20);
        let budget_warnings = log
            .iter()
            .filter(|l| l.contains("WARN") && l.contains("more statements than its budget"))
            .count();
        assert_eq!(budget_warnings, 20, "{log:?}");
        assert!(
            !log.iter()
                .any(|l| l.contains(" request ") && l.contains("status=")),
            "an access log line: {log:?}"
        );
    }

    /// 1,000 half-sent requests (heads without their end, bodies stopping
    /// short): a normal client is still answered within 1 s, and SIGTERM
    /// exits 0 within the grace period, cutting the stalled requests.
    #[test]
    fn a_thousand_half_sent_requests_neither_block_nor_outlive_shutdown() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let mut server = Server::start_with(
            fixture.database_url().as_connection_str(),
            &["--grace-period", "3"],
        );
        let held: Vec<TcpStream> = (0..1000)
            .map(|i| {
                if i % 10 == 0 {
                    half_sent_post(&server)
                } else {
                    let mut stream = connect(&server);
                    stream
                        .write_all(b"GET /users/1 HTTP/1.1\r\nHost: keel\r\n")
                        .expect("half a head");
                    stream
                }
            })
            .collect();

        let asked = Instant::now();
        let response = get(&server, "/healthz");
        let waited = asked.elapsed();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            waited < Duration::from_secs(1),
            "answered after {waited:?} with 1,000 stalled connections open"
        );

        // The stalled bodies' read timeout (5 s) is past the grace period
        // (3 s): only the deadline can end them.
        let (status, took) = terminate(&mut server, Duration::from_secs(8));
        assert!(status.success(), "exit status {status}");
        assert!(took >= Duration::from_secs(2), "exited after {took:?}");
        assert!(
            server.logged_within(|l| l.contains("grace period over") && l.contains("cut=")),
            "{:?}",
            server.log()
        );
        drop(held);
    }

    /// A head that never ends is dropped after the header-read timeout.
    #[test]
    fn a_head_that_never_ends_is_dropped() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let server = Server::start_with(
            fixture.database_url().as_connection_str(),
            &["--header-read-timeout", "1"],
        );
        let mut stream = connect(&server);
        stream
            .write_all(b"GET /users/1 HTTP/1.1\r\nHost: keel\r\n")
            .expect("half a head");
        let mut rest = Vec::new();
        // Before the timeout existed, this read waited out its own 10 s.
        let read = stream.read_to_end(&mut rest);
        assert!(
            read.is_ok()
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the server kept the connection: {read:?}"
        );
    }

    /// A body that stops arriving gets a JSON 408 after the body-read timeout.
    #[test]
    fn a_body_that_stops_arriving_gets_a_408() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let server = Server::start_with(
            fixture.database_url().as_connection_str(),
            &["--body-read-timeout", "1"],
        );
        let mut stream = half_sent_post(&server);
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("a response, not a wait");
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("\"body_timeout\""), "{response}");
        assert!(
            response.to_ascii_lowercase().contains("x-query-count: 0"),
            "{response}"
        );
        assert!(get(&server, "/users?limit=1").contains("\"items\":[]"));
    }

    /// A request stuck behind another session's table lock is answered
    /// 503 `timeout` after the request timeout, and the server goes on.
    #[test]
    fn a_request_past_its_timeout_gets_a_503() {
        use diesel::connection::SimpleConnection as _;
        use diesel::{Connection as _, PgConnection};

        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        let server = Server::start_with(&fixture.url(), &["--request-timeout", "1"]);
        let mut locker = PgConnection::establish(&fixture.url()).expect("connect");
        locker
            .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            .expect("lock users");
        let response = get(&server, "/users/1");
        locker.batch_execute("ROLLBACK").expect("release");
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(response.contains("\"timeout\""), "{response}");
        assert!(get(&server, "/users/1").starts_with("HTTP/1.1 404"));
    }

    /// A connection waiting in the listen queue at SIGTERM (here: behind a
    /// cap of one connection) is answered, not reset.
    #[test]
    fn connections_queued_at_sigterm_are_answered() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        let mut server = Server::start_with(
            fixture.database_url().as_connection_str(),
            &["--max-connections", "1"],
        );
        // Holds the only slot: one request answered, the connection kept.
        let mut first = connect(&server);
        first
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\n\r\n")
            .expect("request");
        let mut head = [0u8; 256];
        let read = first.read(&mut head).expect("response");
        assert!(head[..read].starts_with(b"HTTP/1.1 200"));

        let mut queued = connect(&server);
        queued
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n")
            .expect("request");
        queued
            .set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        assert!(
            queued.read(&mut head).is_err(),
            "the queued connection must wait for the slot"
        );

        queued
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let (status, _) = terminate(&mut server, Duration::from_secs(12));
        assert!(status.success(), "exit status {status}");
        let mut response = String::new();
        queued
            .read_to_string(&mut response)
            .expect("an answer, not a reset");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
}

/// Arbitrary strings, ids, bytes and content types against the API: every
/// answer is a 2xx or a 4xx with a JSON error, never a 500; what is stored
/// reads back byte for byte; nothing is written by a rejected request.
mod bad_input {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    fn nasty_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            Just(String::new()),
            Just("'; DROP TABLE users; --".to_owned()),
            Just("nul\0byte".to_owned()),
            Just("ü".repeat(60_000)),
            "[a-z]{1,8}@[a-z]{1,8}\\.[a-z]{2,3}",
        ]
    }

    fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            Just(b"{".to_vec()),
            Just(b"[]".to_vec()),
            Just(b"null".to_vec()),
            Just(b"{\"email\": 5}".to_vec()),
            Just(vec![b'a'; 70_000]),
        ]
    }

    fn run_properties(server: &Server) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        // A fresh connection per request: after a 413 the server closes the
        // connection without reading the body, and a reused keep-alive
        // connection would fail on the client side for reasons of its own.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let mut runner = TestRunner::new(Config {
            cases: 40,
            failure_persistence: None,
            ..Config::default()
        });
        let users = || -> usize {
            let page = runtime.block_on(async {
                json_of(
                    http.get(server.url("/users?limit=100"))
                        .send()
                        .await
                        .expect("GET"),
                )
                .await
            });
            page["items"].as_array().map_or(0, Vec::len)
        };

        runner
            .run(&(nasty_string(), nasty_string(), proptest::option::of(nasty_string())), |(email, full_name, first_name)| {
                let before = users();
                let body = json!({ "email": email, "full_name": full_name, "first_name": first_name, "last_name": null, "is_active": true });
                let (status, reply) = runtime.block_on(async {
                    let response = http.post(server.url("/users")).json(&body).send().await.expect("POST");
                    (response.status(), json_of(response).await)
                });
                prop_assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{reply}");
                if status == StatusCode::CREATED {
                    let id = reply["id"].as_i64().expect("id");
                    let read = runtime.block_on(async { json_of(http.get(server.url(&format!("/users/{id}"))).send().await.expect("GET")).await });
                    prop_assert_eq!(read["email"].as_str(), Some(email.as_str()));
                    prop_assert_eq!(read["full_name"].as_str(), Some(full_name.as_str()));
                    prop_assert_eq!(read["first_name"].as_str(), first_name.as_deref());
                } else {
                    prop_assert!(status.is_client_error(), "{status}");
                    prop_assert!(reply["error"]["code"].is_string(), "{reply}");
                    prop_assert_eq!(users(), before, "a rejected request wrote something");
                }
                Ok(())
            })
            .expect("user property");

        let content_types = prop_oneof![
            Just("application/json"),
            Just("text/plain"),
            Just("application/x-www-form-urlencoded"),
            Just("application/json; charset=utf-8"),
        ];
        runner
            .run(
                &(body_bytes(), content_types, any::<i64>()),
                |(bytes, content_type, id)| {
                    let (post_status, get_status, path_status) = runtime.block_on(async {
                        let post = http
                            .post(server.url("/users"))
                            .header("content-type", content_type)
                            .body(bytes.clone())
                            .send()
                            .await
                            .expect("POST");
                        let get = http
                            .get(server.url(&format!("/users/{id}?include=posts.comments")))
                            .send()
                            .await
                            .expect("GET");
                        let path = http
                            .get(server.url(&format!("/posts/{id}/comments?after={id}&limit={id}")))
                            .send()
                            .await
                            .expect("GET");
                        (post.status(), get.status(), path.status())
                    });
                    for status in [post_status, get_status, path_status] {
                        prop_assert!(
                            status.is_success() || status.is_client_error(),
                            "{status} for {content_type} / {id}"
                        );
                    }
                    Ok(())
                },
            )
            .expect("bytes property");
    }

    #[test]
    fn sqlite() {
        let fixture = keel_tests::SqliteTestDatabase::create();
        run_properties(&Server::start(fixture.database_url().as_connection_str()));
    }

    #[test]
    fn postgres() {
        let Some(fixture) = keel_tests::PgTestDatabase::create() else {
            return;
        };
        run_properties(&Server::start(fixture.database_url().as_connection_str()));
    }
}

/// A password in the database URL shows nowhere: not in the log, not in
/// `/metrics`, not in the error when the server cannot be reached.
#[tokio::test]
async fn database_passwords_never_show() {
    let Some(fixture) = keel_tests::PgTestDatabase::create() else {
        return;
    };
    let url = fixture
        .url()
        .replacen("postgres://postgres@", "postgres://postgres:hunter2@", 1);
    assert!(url.contains("hunter2"), "{url}");
    let server = Server::start(&url);
    let http = reqwest::Client::new();
    create_user(&http, &server, 1).await;
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    let health = http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("text");
    assert!(!metrics.contains("hunter2") && !health.contains("hunter2"));
    assert!(
        server.log().iter().any(|l| l.contains("postgres:***@")),
        "{:?}",
        server.log()
    );
    assert!(
        !server.log().iter().any(|l| l.contains("hunter2")),
        "{:?}",
        server.log()
    );

    let unreachable = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", "postgres://keel:hunter2@127.0.0.1:1/keel")
        .output()
        .expect("run keel");
    assert_eq!(unreachable.status.code(), Some(1));
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&unreachable.stdout),
        String::from_utf8_lossy(&unreachable.stderr)
    );
    assert!(everything.contains("cannot connect"), "{everything}");
    assert!(!everything.contains("hunter2"), "{everything}");
}

/// `keel serve --replica-url`: a write's response carries `X-Keel-Lsn`, a
/// read sent with it sees the write on the replica, `/healthz` shows the
/// replica, and a malformed LSN is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_and_the_lsn_header() {
    let Some(primary) = keel_tests::PgCluster::start_primary() else {
        return;
    };
    let standby = primary.start_standby();
    let replica = standby.url("postgres");
    let server = Server::start_with(&primary.url("postgres"), &["--replica-url", &replica]);
    let http = reqwest::Client::new();
    for n in 0..50 {
        let response = http
            .post(server.url("/users"))
            .json(&user_body(n))
            .send()
            .await
            .expect("POST /users");
        assert_eq!(response.status(), StatusCode::CREATED);
        let lsn = response
            .headers()
            .get("x-keel-lsn")
            .expect("a write's response carries X-Keel-Lsn")
            .clone();
        let id = json_of(response).await["id"].clone();
        let read = http
            .get(server.url(&format!("/users/{id}")))
            .header("x-keel-lsn", lsn)
            .send()
            .await
            .expect("GET /users/{id}");
        assert_eq!(
            read.status(),
            StatusCode::OK,
            "a read with the LSN missed the write"
        );
    }
    let health = json_of(
        http.get(server.url("/healthz"))
            .send()
            .await
            .expect("/healthz"),
    )
    .await;
    let replicas = health["replicas"].as_array().expect("replicas in /healthz");
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0]["role"], "standby");
    // Every GET went to the standby, or (behind the write) to the primary.
    let reads = replicas[0]["reads"].as_u64().unwrap_or_default();
    let fallbacks = replicas[0]["fallbacks"].as_u64().unwrap_or_default();
    assert!(reads > 0, "no GET was served by the standby: {health}");
    assert!(reads + fallbacks >= 50, "{health}");
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("metrics text");
    let served: u64 = metrics
        .lines()
        .find(|line| line.starts_with("keel_db_replica_reads_total{"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("db_replica_reads_total in /metrics: {metrics}"));
    assert!(served >= reads, "{metrics}");
    let bad = http
        .get(server.url("/users/1"))
        .header("x-keel-lsn", "not-an-lsn")
        .send()
        .await
        .expect("GET with a bad LSN");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // `keel doctor` checks the replica too.
    let doctor = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["doctor", "--json"])
        .env("DATABASE_URL", primary.url("postgres"))
        .env("DATABASE_REPLICA_URLS", &replica)
        .output()
        .expect("run keel doctor");
    let report: Value = serde_json::from_slice(&doctor.stdout).expect("doctor's JSON report");
    assert_eq!(report["replicas"][0]["role"], "standby", "{report}");
    assert_eq!(report["replicas"][0]["in_rotation"], true, "{report}");
    assert!(doctor.status.success(), "{report}");
}
