package procnet

import (
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func port(t *testing.T, l net.Listener) int {
	p, err := PortOf(l.Addr().String())
	require.NoError(t, err)
	return p
}

func TestListensTellsTheOwnerFromAnotherProcess(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	p := port(t, l)

	ok, err := Listens(os.Getpid(), p)
	require.NoError(t, err)
	assert.True(t, ok, "this process listens on %d", p)

	// Another live process does not own the port, although the port answers.
	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	ok, err = Listens(cmd.Process.Pid, p)
	require.NoError(t, err)
	assert.False(t, ok, "sleep does not listen on %d", p)
	assert.True(t, Alive(cmd.Process.Pid))

	// IPv6 listeners count too.
	if l6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		defer l6.Close()
		ok, err = Listens(os.Getpid(), port(t, l6))
		require.NoError(t, err)
		assert.True(t, ok, "IPv6 listener")
	}

	// A closed listener is not listening.
	l.Close()
	ok, err = Listens(os.Getpid(), p)
	require.NoError(t, err)
	assert.False(t, ok)
}

func TestAliveIsFalseForAnExitedProcess(t *testing.T) {
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	assert.False(t, Alive(cmd.Process.Pid))
	assert.False(t, Alive(0))
	assert.True(t, Alive(os.Getpid()))
}

func TestAProcessThatIsGoneListensNowhere(t *testing.T) {
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	ok, err := Listens(cmd.Process.Pid, 80)
	require.NoError(t, err)
	assert.False(t, ok)
}
