package hostfs

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/maestro-platform/deploy/tasks/labels"
	"github.com/maestro-platform/deploy/tasks/ui"
)

// Holder says who holds an environment's lock.
type Holder struct {
	// User is the local user and machine ("ana@laptop").
	User string `json:"user"`
	// PID is the holding process on that machine.
	PID int `json:"pid"`
	// Command is what it runs: "promote", "rollback".
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
	// Session tells this holding apart from every other (random): the
	// audit record of a holder that died is written by the next one, once.
	Session string `json:"session,omitempty"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%s (%s, pid %d) since %s", h.User, h.Command, h.PID, h.Since.Local().Format("2006-01-02 15:04:05"))
}

// Me describes this process as a lock holder running command.
func Me(command string) Holder {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	session := make([]byte, 8)
	_, _ = rand.Read(session)
	return Holder{User: name + "@" + host, PID: os.Getpid(), Command: command, Since: time.Now().UTC(),
		Session: hex.EncodeToString(session)}
}

// BusyError is a lock that a live session holds.
type BusyError struct {
	Dir, Host string
	Holder    Holder
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%s on %s is locked by %s: one promotion or rollback at a time; "+
		"wait for it to end, or add -wait to wait for it", e.Dir, e.Host, e.Holder)
}

// Lock is the environment's lock, held by this process.
type Lock struct {
	f   *FS
	att client.HijackedResponse
	// Holder is who holds it: this process.
	Holder Holder
	// TookOver is the holder whose session ended without releasing the
	// lock, which this one took over (nil when the lock was free).
	TookOver *Holder
	done     chan struct{}
}

// Lock takes the lock of the folder for h, or returns a *BusyError naming
// who holds it. The lock lives as long as this process's connection to the
// agent: the host tool holds a flock while its input is open, and a
// holder that dies or whose ssh session is cut closes that input, so a
// lock never outlives its holder (the next one takes it over and says so).
func (f *FS) Lock(ctx context.Context, h Holder) (*Lock, error) {
	desc, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	ex, err := f.api.ExecCreate(ctx, f.agent, client.ExecCreateOptions{Cmd: []string{"/hosttool", "hold", string(desc)},
		AttachStdin: true, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return nil, fmt.Errorf("lock %s on %s: %w", f.dir, f.host, err)
	}
	att, err := f.api.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return nil, fmt.Errorf("lock %s on %s: %w", f.dir, f.host, err)
	}
	pr, pw := io.Pipe()
	l := &Lock{f: f, att: att.HijackedResponse, Holder: h, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		_, err := stdcopy.StdCopy(pw, io.Discard, att.Reader)
		pw.CloseWithError(err)
	}()
	line, err := bufio.NewReader(io.LimitReader(pr, maxOutput)).ReadBytes('\n')
	if err != nil {
		att.Close()
		return nil, fmt.Errorf("lock %s on %s: the host tool answered nothing: %w", f.dir, f.host, err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var ans struct {
		Held     bool    `json:"held"`
		Busy     bool    `json:"busy"`
		Holder   *Holder `json:"holder"`
		TookOver *Holder `json:"took_over"`
	}
	if err := json.Unmarshal(line, &ans); err != nil || ans.Held == ans.Busy {
		att.Close()
		return nil, fmt.Errorf("lock %s on %s: bad answer %q", f.dir, f.host, ui.Clean(string(line)))
	}
	if ans.Busy {
		att.Close()
		be := &BusyError{Dir: f.dir, Host: f.host}
		if ans.Holder != nil {
			be.Holder = *ans.Holder
			be.Holder.User = ui.Clean(be.Holder.User)
			be.Holder.Command = ui.Clean(be.Holder.Command)
		}
		return nil, be
	}
	if ans.TookOver != nil {
		ans.TookOver.User, ans.TookOver.Command = ui.Clean(ans.TookOver.User), ui.Clean(ans.TookOver.Command)
		ans.TookOver.Session = ui.Clean(ans.TookOver.Session)
		l.TookOver = ans.TookOver
	}
	f.retireOthers(ctx)
	return l, nil
}

// retireOthers removes the agents of other tool versions serving the
// folder. Only the lock's holder does it: the flock is exclusive, so none
// of them holds the lock then, and none can take it until this holder lets
// go. A failure only leaves an idle container behind.
func (f *FS) retireOthers(ctx context.Context) {
	list, err := f.api.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", labels.ToolDir+"="+f.dir)})
	if err != nil {
		return
	}
	for _, c := range list.Items {
		if c.ID != f.agent && c.Labels[labels.Tool] != "" && c.Labels[labels.ToolDir] == f.dir {
			_, _ = f.api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
}

// Release gives the lock back and waits until the host tool has let go.
func (l *Lock) Release() error {
	_, err := io.WriteString(l.att.Conn, "release\n")
	if err == nil {
		err = l.att.CloseWrite()
	}
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
	}
	l.att.Close()
	if err != nil {
		return fmt.Errorf("release the lock of %s on %s: %w", l.f.dir, l.f.host, err)
	}
	return nil
}

// Abandon drops the connection without releasing, as a holder that dies
// does: for tests of what the next holder sees.
func (l *Lock) Abandon() { l.att.Close() }

// AuditAppend appends one record (any JSON object) to the folder's audit
// log.
func (f *FS) AuditAppend(ctx context.Context, record any) error {
	b, err := json.Marshal(record)
	if err != nil {
		return err
	}
	var ok map[string]bool
	return f.run(ctx, &ok, "audit-append", string(b))
}

// AuditRead returns the audit log's records, oldest first: the newest
// that fit in maxAudit bytes, however large the log is.
func (f *FS) AuditRead(ctx context.Context) ([]json.RawMessage, error) {
	var recs []json.RawMessage
	return recs, f.run(ctx, &recs, "audit-read", strconv.Itoa(maxAudit))
}
