package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/klring/klring/certs"
)

func certsCmd() *cobra.Command {
	var (
		out     string
		hosts   []string
		clients []string
		days    int
		force   bool
		routes  bool
	)
	cmd := &cobra.Command{
		Use:   "certs --out DIR --hosts NAME,IP,...",
		Short: "Make the TLS certificates of a deployment: a CA, the NATS server's certificate, a client certificate per role",
		Long: "Make the TLS certificates of a deployment, with no openssl: a new CA (ca.pem), a certificate for the NATS server " +
			"(server.pem, server-key.pem) valid for every name and IP address in --hosts, and a client certificate per name in " +
			"--clients (<client>.pem, <client>-key.pem) for mutual TLS. Keys are ECDSA P-256 in files of mode 0600. The CA's key " +
			"is not kept: to add a host name, make a new set. Existing files are not replaced unless --force.\n\n" +
			"Give the NATS server ca.pem, server.pem and server-key.pem; give every klring process ca.pem (nats.tls_ca) and its " +
			"role's certificate and key (nats.tls_cert, nats.tls_key). With --routes, also route.pem and route-key.pem for the routes between " +
			"the servers of a NATS cluster (docs/cluster.md). docs/security.md explains the rest.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			if days < 1 {
				return fmt.Errorf("--days = %d: must be >= 1", days)
			}
			files, err := certs.Generate(out, certs.Request{Hosts: hosts, Clients: clients, Validity: time.Duration(days) * 24 * time.Hour, Force: force, Route: routes})
			if err != nil {
				return err
			}
			printFiles(cmd.OutOrStdout(), files)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "folder to write into (made if missing)")
	f.StringSliceVar(&hosts, "hosts", nil, "DNS names and IP addresses of the NATS server, as clients write them in nats.url (comma separated)")
	f.StringSliceVar(&clients, "clients", []string{"coordinator", "worker"}, "names of the client certificates (comma separated)")
	f.IntVar(&days, "days", 365, "validity of the certificates, in days")
	f.BoolVar(&force, "force", false, "replace files that exist")
	f.BoolVar(&routes, "routes", false, "also make route.pem and route-key.pem: the certificate the servers of a NATS cluster present to each other on routes (valid for --hosts as server and client)")
	return cmd
}

func printFiles(w io.Writer, files []certs.File) {
	for _, f := range files {
		fmt.Fprintf(w, "wrote %s (mode %04o)\n", f.Path, f.Mode)
	}
}
