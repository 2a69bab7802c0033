package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoFile reads a file of the repository from cmd/sluiced.
func repoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDockerfile: the image's build stage builds with `make build` (so the image's binaries are built
// as a checkout's are: static, paths trimmed, version stamped) and ships what make build writes; the
// runtime stage runs as a non-root user with the data directory on a volume, and its SLUICE_*
// settings name real flags.
func TestDockerfile(t *testing.T) {
	df := repoFile(t, "deploy/Dockerfile")
	stages := regexp.MustCompile(`(?m)^FROM `).Split(df, -1)
	if len(stages) != 3 {
		t.Fatalf("want a multi-stage Dockerfile of two stages, have %d", len(stages)-1)
	}
	build, runtime := stages[1], stages[2]
	if !regexp.MustCompile(`(?m)^RUN make build VERSION=\$VERSION$`).MatchString(build) {
		t.Errorf("the build stage does not run `make build VERSION=$VERSION`:\n%s", build)
	}
	if regexp.MustCompile(`(?m)^RUN .*go build`).MatchString(build) {
		t.Errorf("the build stage runs go build itself, not make build:\n%s", build)
	}
	makeN, err := exec.Command("make", "-s", "-n", "-C", filepath.Join("..", ".."), "build", "VERSION=v9.9.9").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n build: %v\n%s", err, makeN)
	}
	for _, want := range []string{"CGO_ENABLED=0 ", " build -trimpath ", "internal/buildinfo.version=v9.9.9", "-o bin/ ./cmd/..."} {
		if !strings.Contains(string(makeN), want) {
			t.Errorf("make build runs %q, without %q", makeN, want)
		}
	}
	if !strings.Contains(runtime, "COPY --from=build /src/bin/sluiced /src/bin/sluice /usr/local/bin/") {
		t.Errorf("the image does not ship make build's bin/sluiced and bin/sluice:\n%s", runtime)
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)$`).FindStringSubmatch(runtime)
	if user == nil || user[1] == "root" || strings.HasPrefix(user[1], "0") {
		t.Errorf("the image runs as %v, want a non-root USER", user)
	}
	if !regexp.MustCompile(`(?m)^VOLUME /var/lib/sluice$`).MatchString(runtime) {
		t.Error("no VOLUME for the data directory")
	}
	env := regexp.MustCompile(`(?m)^ENV (.*)$`).FindStringSubmatch(runtime)
	if env == nil {
		t.Fatal("no ENV line")
	}
	checkEnv(t, strings.Fields(env[1]), map[string]string{"data": "/var/lib/sluice", "listen": "0.0.0.0:7450", "metrics": "0.0.0.0:7451"})
}

// TestSystemdUnit: deploy/sluiced.service passes systemd-analyze verify (with ExecStart pointed at a
// built sluiced), and its SLUICE_* settings name real flags.
func TestSystemdUnit(t *testing.T) {
	unit := repoFile(t, "deploy/sluiced.service")
	var env []string
	for _, m := range regexp.MustCompile(`(?m)^Environment=(\S+)$`).FindAllStringSubmatch(unit, -1) {
		env = append(env, m[1])
	}
	checkEnv(t, env, map[string]string{"data": "/var/lib/sluice", "listen": "127.0.0.1:7450", "metrics": "127.0.0.1:7451"})

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: install the Debian package systemd (.ci/run does)")
	}
	const exec0 = "ExecStart=/usr/local/bin/sluiced"
	if !strings.Contains(unit, exec0+"\n") {
		t.Fatalf("the unit does not start /usr/local/bin/sluiced")
	}
	path := filepath.Join(t.TempDir(), "sluiced.service")
	if err := os.WriteFile(path, []byte(strings.Replace(unit, exec0, "ExecStart="+sluicedBinary(t), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// checkEnv sets each NAME=value of env and checks that parseConfig reads them as the flags want
// names (data, listen, metrics).
func checkEnv(t *testing.T, env []string, want map[string]string) {
	t.Helper()
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "SLUICE_") {
			t.Fatalf("environment setting %q is not SLUICE_NAME=value", kv)
		}
		t.Setenv(k, v)
	}
	cfg, _, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{"data": cfg.Data, "listen": cfg.Listen, "metrics": cfg.Metrics}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("--%s from the environment: %q, want %q", k, got[k], v)
		}
	}
}
