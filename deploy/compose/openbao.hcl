# OpenBao (dev mode) in the demo stack: two audit devices, so that a request never fails
# because auditspan is restarting. OpenBao 2.x declares audit devices here; they cannot be
# enabled over the API.
audit "http" "auditspan" {
  options {
    uri     = "http://auditspan:9180/v1/audit"
    headers = "{\"Authorization\": [\"Bearer demo-audit-token\"]}"
  }
}

audit "file" "file" {
  options {
    file_path = "/openbao/audit/audit.log"
  }
}
