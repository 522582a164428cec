audit "http" "as" {
  options {
    uri = "http://127.0.0.1:18999/v1/audit"
    headers = "{\"Authorization\": [\"Bearer tok\"]}"
  }
}
audit "file" "f" {
  options { file_path = "/tmp/baoh/audit.log" }
}
