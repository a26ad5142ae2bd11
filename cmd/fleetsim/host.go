package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"backfill/internal/filesapi"
)

// The fleet's machines, as directories under DIR:
//
//	volumes/ws-<uuid>-configs/_data/    a self-hosted workspace's /configs (its Docker volume)
//	docker/containers/<name>            a self-hosted container: "running <id>" or "exited <id>"; absent: no such container
//	bin/docker                          the fake docker CLI that reads the two above
//	hosted/<tenant>/state/<uuid>/configs/   a hosted server's host mirror (bundle of the last provision)
//	hosted/<tenant>/ec2/<instance>/configs/ an EC2 instance's /configs, reachable over EIC while it runs
//	catalog/<template>/                 the template cache the servers fall back to (and backfill's --catalog)
const (
	dirVolumes    = "volumes"
	dirContainers = "docker/containers"
	dirBin        = "bin"
	dirHosted     = "hosted"
	fileManifest  = "manifest.json"
)

// containerName is a self-hosted workspace's container.
func containerName(id string) string { return "ws-" + id }

// containerID is the 64-hex id Docker would show for a container.
func containerID(name string) string {
	sum := sha256.Sum256([]byte("fleetsim container " + name))
	return hex.EncodeToString(sum[:])
}

func volumeDir(dir, container string) string {
	return filepath.Join(dir, dirVolumes, container+"-configs", "_data")
}

func mirrorDir(dir, tenant, id string) string {
	return filepath.Join(dir, dirHosted, tenant, "state", id, "configs")
}

func instanceDir(dir, tenant, instanceID string) string {
	return filepath.Join(dir, dirHosted, tenant, "ec2", instanceID, "configs")
}

// stores are the directories holding the workspace's /configs that
// something can read, and a restart rewrites.
func (t *tenantSpec) stores(dir string, w *workspaceSpec) []string {
	switch {
	case w.Status == "removed":
		return nil
	case !t.hosted():
		return []string{volumeDir(dir, containerName(w.ID))}
	case w.EC2 && w.container() == containerRunning:
		return []string{instanceDir(dir, t.Name, w.InstanceID)}
	case w.EC2 || w.NoMirror:
		return nil
	}
	return []string{mirrorDir(dir, t.Name, w.ID)}
}

// systemPrompt sits beside config.yaml in every /configs, so listings show
// more than the one file, as the platform's do.
const systemPrompt = "You are a workspace of a simulated fleet.\n"

// writeHosts lays out every workspace's files and self-hosted container
// state under dir.
func writeHosts(dir string, spec *fleetSpec) error {
	for _, sub := range []string{dirVolumes, dirContainers, dirHosted} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	for _, t := range spec.Tenants {
		for _, w := range t.Workspaces {
			if err := writeWorkspace(dir, t, w); err != nil {
				return err
			}
		}
	}
	return writeDocker(dir)
}

// writeWorkspace lays out one workspace's files: its /configs wherever
// something can read them, and a self-hosted one's container state.
func writeWorkspace(dir string, t *tenantSpec, w *workspaceSpec) error {
	for _, s := range t.stores(dir, w) {
		if err := os.MkdirAll(s, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(s, "system-prompt.md"), []byte(systemPrompt), 0o644); err != nil {
			return err
		}
		if w.Live != nil {
			if err := writeAtomic(filepath.Join(s, "config.yaml"), w.Live, 0o644); err != nil {
				return err
			}
		}
	}
	if t.hosted() || w.container() == containerAbsent {
		return nil
	}
	name := containerName(w.ID)
	state := fmt.Sprintf("%s %s\n", w.container(), containerID(name))
	return writeAtomic(filepath.Join(dir, dirContainers, name), []byte(state), 0o644)
}

// dockerScript is DIR/bin/docker: the one docker command backfill's exec
// collector runs, answered from DIR/docker/containers and DIR/volumes with
// the daemon's own messages. A POSIX shell script, so the fleet needs no
// compiler and an operator can read what it does.
const dockerScript = `#!/bin/sh
# fleetsim's fake docker: only "docker exec CONTAINER cat /configs/FILE" and
# "docker exec CONTAINER dd if=/configs/FILE iflag=nofollow status=none" are
# simulated, from the fleet's container states and config volumes.
containers=%s
volumes=%s
reader=
if [ "$#" -eq 4 ] && [ "$1" = exec ] && [ "$3" = cat ]; then
	reader=cat
	file=$4
elif [ "$#" -eq 6 ] && [ "$1" = exec ] && [ "$3" = dd ] && [ "$5" = iflag=nofollow ] && [ "$6" = status=none ]; then
	case $4 in
	if=*) reader=dd file=${4#if=} ;;
	esac
fi
if [ -z "$reader" ]; then
	echo "docker (fleetsim): only 'docker exec CONTAINER cat /configs/FILE' and 'docker exec CONTAINER dd if=/configs/FILE iflag=nofollow status=none' are simulated" >&2
	exit 125
fi
name=$2
case $name in
'' | . | .. | -* | *[!A-Za-z0-9_.-]*)
	echo "Error response from daemon: No such container: $name" >&2
	exit 1
	;;
esac
if [ ! -f "$containers/$name" ]; then
	echo "Error response from daemon: No such container: $name" >&2
	exit 1
fi
read -r state id <"$containers/$name"
if [ "$state" != running ]; then
	echo "Error response from daemon: container $id is not running" >&2
	exit 1
fi
case $file in
/configs/*) rel=${file#/configs/} ;;
*) rel= ;;
esac
case /$rel/ in
*/../* | */./* | //) rel= ;;
esac
path=$volumes/$name-configs/_data/$rel
if [ "$reader" = dd ] && [ -n "$rel" ] && [ -L "$path" ]; then
	# O_NOFOLLOW on a symbolic link: ELOOP.
	echo "dd: failed to open '$file': Too many levels of symbolic links" >&2
	exit 1
fi
if [ "$reader" = dd ] && [ -n "$rel" ] && [ -d "$path" ]; then
	echo "dd: error reading '$file': Is a directory" >&2
	exit 1
fi
if [ -z "$rel" ] || [ ! -f "$path" ]; then
	if [ "$reader" = dd ]; then
		echo "dd: failed to open '$file': No such file or directory" >&2
	else
		echo "cat: $file: No such file or directory" >&2
	fi
	exit 1
fi
exec /bin/cat -- "$path"
`

// writeDocker writes DIR/bin/docker.
func writeDocker(dir string) error {
	bin := filepath.Join(dir, dirBin)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	script := fmt.Sprintf(dockerScript, shellQuote(filepath.Join(dir, dirContainers)), shellQuote(filepath.Join(dir, dirVolumes)))
	return writeAtomic(filepath.Join(bin, "docker"), []byte(script), 0o755)
}

// tenantHost is what one tenant's workspace server sees: its rows (kept in
// memory, as the server reads them by id with no status filter), its
// containers (self-hosted) or EC2 instances (hosted).
type tenantHost struct {
	dir    string
	tenant string
	hosted bool

	mu   sync.RWMutex
	rows map[string]filesapi.Workspace
}

func newTenantHost(dir string, t *tenantSpec) *tenantHost {
	h := &tenantHost{dir: dir, tenant: t.Name, hosted: t.hosted(), rows: map[string]filesapi.Workspace{}}
	for _, w := range t.Workspaces {
		h.rows[w.ID] = filesapi.Workspace{Name: w.Name, InstanceID: w.InstanceID}
	}
	return h
}

// Workspace implements filesapi.Host.
func (h *tenantHost) Workspace(id string) (filesapi.Workspace, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	w, ok := h.rows[id]
	return w, ok
}

// add makes a row created while the fleet runs known to the server.
func (h *tenantHost) add(w *workspaceSpec) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rows[w.ID] = filesapi.Workspace{Name: w.Name, InstanceID: w.InstanceID}
}

// forget drops a deleted row.
func (h *tenantHost) forget(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.rows, id)
}

// Instance implements filesapi.Host: an instance is reachable while its
// directory exists.
func (h *tenantHost) Instance(instanceID string) (string, bool) {
	if !h.hosted || !plainPathName(instanceID) {
		return "", false
	}
	d := instanceDir(h.dir, h.tenant, instanceID)
	fi, err := os.Stat(d)
	return d, err == nil && fi.IsDir()
}

// Container implements filesapi.Host. A hosted server's Docker host runs
// no ws-<uuid> containers; a self-hosted one reads the same state files as
// bin/docker, so the two always agree.
func (h *tenantHost) Container(name string) (string, bool) {
	if h.hosted || !plainPathName(name) {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(h.dir, dirContainers, name))
	if err != nil || !strings.HasPrefix(string(b), containerRunning+" ") {
		return "", false
	}
	return volumeDir(h.dir, name), true
}

func plainPathName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}
