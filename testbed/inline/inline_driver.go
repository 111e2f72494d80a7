// Copied next to a Go example's program (in place of its main.go) by the e2e tests.
//
// Run the real Pulumi CLI on a Go program, serving the program from this process.
// pulumi-language-go cannot be built here (its Go module is not served), so the CLI cannot build
// and start a Go program itself. This main serves the program's `connect` function with a small
// LanguageRuntime server on 127.0.0.1 (as the Go Automation API does for inline programs) and
// passes the CLI `--client=<addr> --exec-kind auto.inline`, only for commands that run the
// program, exactly as testbed/pulumi_program.py does for Python. Every argument reaches the real
// CLI unchanged.
//
//	go build -o run . && ./run <pulumi args>
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// inlineServer hands the engine the program for each Run, as an inline Automation API program.
type inlineServer struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	program pulumi.RunFunc
}

func (s *inlineServer) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (s *inlineServer) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: "1.0.0"}, nil
}

func (s *inlineServer) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	engine := ""
	if len(req.Args) > 0 {
		engine = req.Args[0]
	}
	pctx, err := pulumi.NewContext(ctx, pulumi.RunInfo{
		EngineAddr:       engine,
		MonitorAddr:      req.GetMonitorAddress(),
		Config:           req.GetConfig(),
		ConfigSecretKeys: req.GetConfigSecretKeys(),
		Project:          req.GetProject(),
		Stack:            req.GetStack(),
		Parallel:         req.GetParallel(),
		DryRun:           req.GetDryRun(),
		Organization:     req.GetOrganization(),
	})
	if err != nil {
		return nil, err
	}
	defer pctx.Close()
	if err := runGuarded(pctx, s.program); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// runGuarded runs the program, turning a panic into the run's error instead of killing the server.
func runGuarded(ctx *pulumi.Context, program pulumi.RunFunc) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the program panicked: %v", r)
		}
	}()
	return pulumi.RunWithContext(ctx, program)
}

func runsProgram(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "up", "update", "preview", "pre":
		return true
	case "destroy", "down", "refresh":
		return slices.Contains(args, "--run-program") || slices.Contains(args, "--run-program=true")
	}
	return false
}

func main() {
	args := os.Args[1:]
	stop := func() {}
	if runsProgram(args) {
		listener, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		server := grpc.NewServer(grpc.MaxRecvMsgSize(400 * 1024 * 1024))
		pulumirpc.RegisterLanguageRuntimeServer(server, &inlineServer{program: connect})
		go func() { _ = server.Serve(listener) }()
		stop = server.Stop
		args = append(args, "--client="+listener.Addr().String(), "--exec-kind", "auto.inline")
	}
	cli := os.Getenv("PULUMI_CLI")
	if cli == "" {
		cli = "pulumi"
	}
	// Ctrl-C reaches the CLI too; it cancels cleanly and still needs our language server meanwhile.
	signal.Ignore(os.Interrupt)
	cmd := exec.Command(cli, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "PULUMI_DEBUG_COMMANDS=true")
	err := cmd.Run()
	stop()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
