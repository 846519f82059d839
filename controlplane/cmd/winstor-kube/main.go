// Command winstor-kube is a multi-call binary (like hyperkube or k3s): the
// first argument selects the component, the rest are that component's own
// flags. Each Kubernetes component is the upstream cobra command from
// k8s.io/kubernetes/cmd/<component>/app, so it owns its FlagSet exactly as the
// upstream binary does.
//
//	winstor-kube kube-apiserver --etcd-servers=... ...
//	winstor-kube kube-controller-manager --kubeconfig=... ...
//	winstor-kube kube-scheduler --kubeconfig=... ...
//	winstor-kube etcd --data-dir=... --listen-client-urls=http://127.0.0.1:2379
//
// Invoked through a symlink named after a component, the link's name selects
// it (so `kube-apiserver --version` works too).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	_ "time/tzdata" // for timeZone support in CronJob, as upstream

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

var commands = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"etcd":                    newEtcdCommand,
}

func usage() {
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: winstor-kube {%s} [flags]\n", strings.Join(names, "|"))
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := commands[name]; !ok {
		if len(args) == 0 {
			usage()
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	newCommand, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "winstor-kube: unknown component %q\n", name)
		usage()
		os.Exit(2)
	}
	command := newCommand()
	command.SetArgs(args)
	os.Exit(cli.Run(command))
}
