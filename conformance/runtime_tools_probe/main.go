// Command probe is a self-test for conformance/test_runtime_tools.py: a TAP program driven
// exactly like a runtime-tools validation program (RUNTIME in the environment, the working
// directory holding rootfs-amd64.tar.gz, bundles under TMPDIR), built offline from Debian's
// golang-github-opencontainers-runtime-tools-dev. It checks the lifecycle of one container
// whose config comes from runtime-tools' own generator (the base every validation program
// starts from), and what runtime-tools' validator says of the config `$RUNTIME spec` writes.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/blang/semver"
	"github.com/hashicorp/go-multierror"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-tools/generate"
	"github.com/opencontainers/runtime-tools/validate"
	"github.com/xeipuuv/gojsonschema"
)

const schema = "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema/config-schema.json"

var (
	rt    = os.Getenv("RUNTIME")
	count = 0
)

func ok(pass bool, desc string, diag string) {
	count++
	status := "ok"
	if !pass {
		status = "not ok"
	}
	fmt.Printf("%s %d - %s\n", status, count, desc)
	if diag != "" {
		for _, line := range strings.Split(strings.TrimRight(diag, "\n"), "\n") {
			fmt.Printf("# %s\n", line)
		}
	}
}

func call(args ...string) (string, error) {
	out, err := exec.Command(rt, args...).CombinedOutput()
	return string(out), err
}

// specChecks: `$RUNTIME spec` in an empty bundle, checked part by part by runtime-tools'
// validator, and against the JSON schema Debian's runtime-spec package ships (the
// validator's own schema check fetches it from GitHub).
func specChecks(tmp string) {
	dir := filepath.Join(tmp, "spec")
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		ok(false, "spec: written", err.Error())
		return
	}
	out, err := call("spec", "--bundle", dir)
	ok(err == nil, "spec: written", out)
	if err != nil {
		return
	}
	v, err := validate.NewValidatorFromPath(dir, false, "linux")
	if err != nil {
		ok(false, "spec: parsed", err.Error())
		return
	}
	checks := []struct {
		name  string
		check func() error
	}{
		{"platform", v.CheckPlatform}, {"root", v.CheckRoot},
		{"mandatory fields", v.CheckMandatoryFields}, {"mounts", v.CheckMounts},
		{"process", v.CheckProcess}, {"linux", v.CheckLinux},
		{"annotations", v.CheckAnnotations}, {"hooks", v.CheckHooks},
	}
	for _, c := range checks {
		err := c.check()
		if m, isMulti := err.(*multierror.Error); isMulti {
			err = m.ErrorOrNil() // the checks may return an empty list as an error
		}
		diag := ""
		if err != nil {
			diag = err.Error()
		}
		ok(err == nil, "spec: validator accepts "+c.name, diag)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	var cfg rspec.Spec
	_ = json.Unmarshal(raw, &cfg)
	_, err = semver.Parse(cfg.Version)
	ok(err == nil, "spec: ociVersion is SemVer", "ociVersion "+cfg.Version)
	res, err := gojsonschema.Validate(gojsonschema.NewReferenceLoader("file://"+schema),
		gojsonschema.NewBytesLoader(raw))
	diag := ""
	if err != nil {
		diag = err.Error()
	} else {
		for _, e := range res.Errors() {
			diag += e.String() + "\n"
		}
	}
	ok(err == nil && res.Valid(), "spec: config-schema.json accepts it", diag)
}

func state(id string) (rspec.State, string, error) {
	var st rspec.State
	out, err := exec.Command(rt, "state", id).Output()
	if err != nil {
		return st, string(out), err
	}
	return st, string(out), json.Unmarshal(out, &st)
}

func lifecycle(tmp string) {
	bundle := filepath.Join(tmp, "bundle")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		ok(false, "bundle unpacked", err.Error())
		return
	}
	tarball := fmt.Sprintf("rootfs-%s.tar.gz", runtime.GOARCH)
	untar, err := exec.Command("tar", "-xf", tarball, "-C", bundle).CombinedOutput()
	ok(err == nil, "bundle unpacked from "+tarball, string(untar))
	if err != nil {
		return
	}
	g, err := generate.New("linux")
	if err != nil {
		ok(false, "generator", err.Error())
		return
	}
	g.SetRootPath(".")
	g.SetProcessArgs([]string{"sh", "-c", `echo "$(hostname) $(id -u) $(pwd)"`})
	if err := g.SaveToFile(filepath.Join(bundle, "config.json"), generate.ExportOptions{}); err != nil {
		ok(false, "config saved", err.Error())
		return
	}
	stdout, err := os.Create(filepath.Join(tmp, "stdout"))
	if err != nil {
		ok(false, "stdout file", err.Error())
		return
	}
	defer stdout.Close()

	id := fmt.Sprintf("probe-%d", os.Getpid())
	// Files, not pipes: the container inherits them and lives on after create returns.
	stderr, err := os.Create(filepath.Join(tmp, "stderr"))
	if err != nil {
		ok(false, "stderr file", err.Error())
		return
	}
	defer stderr.Close()
	cmd := exec.Command(rt, "create", "--bundle", bundle, id)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	err = cmd.Run()
	errText, _ := os.ReadFile(filepath.Join(tmp, "stderr"))
	ok(err == nil, "create succeeds", string(errText))
	if err != nil {
		return
	}
	defer func() { _, _ = call("delete", "--force", id) }()

	st, raw, err := state(id)
	good := err == nil && st.ID == id && st.Status == "created" && st.Pid > 0 && st.Bundle == bundle
	ok(good, "state after create: id, status created, pid, bundle", raw)

	out, err := call("start", id)
	ok(err == nil, "start succeeds", out)

	stopped := false
	for i := 0; i < 100 && !stopped; i++ {
		st, _, err = state(id)
		stopped = err == nil && st.Status == "stopped"
		if !stopped {
			time.Sleep(100 * time.Millisecond)
		}
	}
	ok(stopped, "state reaches stopped within 10 s", fmt.Sprintf("last status %q", st.Status))

	got, _ := os.ReadFile(filepath.Join(tmp, "stdout"))
	want := "mrsdalloway 0 /\n"
	ok(string(got) == want, "the process ran with the generated hostname, user and cwd",
		fmt.Sprintf("got %q, want %q", got, want))

	out, err = call("kill", id, "KILL")
	ok(err != nil, "kill of a stopped container is an error", out)

	out, err = call("delete", id)
	ok(err == nil, "delete succeeds", out)
	_, _, err = state(id)
	ok(err != nil, "state of a deleted container is an error", "")
}

func main() {
	if rt == "" {
		rt = "runc"
	}
	tmp, err := os.MkdirTemp("", "probe")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(tmp)
	fmt.Println("TAP version 13")
	specChecks(tmp)
	lifecycle(tmp)
	fmt.Printf("1..%d\n", count)
}
