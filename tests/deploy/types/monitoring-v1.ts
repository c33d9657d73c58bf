// The parts of prometheus-operator's monitoring.coreos.com/v1 ServiceMonitor and PodMonitor the
// chart can render, for the typed check (kubernetes-types has only Kubernetes' own kinds). Field
// names and types follow the CRDs (prometheus-operator Documentation/api-reference/api.md); a
// field the chart starts to use must be added here first, so the check stays strict.
import type { ObjectMeta, LabelSelector } from "kubernetes-types/meta/v1";

type Duration = string;

interface NamespaceSelector {
    any?: boolean;
    matchNames?: string[];
}

interface RelabelConfig {
    sourceLabels?: string[];
    separator?: string;
    targetLabel?: string;
    regex?: string;
    modulus?: number;
    replacement?: string;
    action?: string;
}

interface ScrapeEndpoint {
    path?: string;
    scheme?: "http" | "https";
    interval?: Duration;
    scrapeTimeout?: Duration;
    honorLabels?: boolean;
    honorTimestamps?: boolean;
    relabelings?: RelabelConfig[];
    metricRelabelings?: RelabelConfig[];
}

export interface Endpoint extends ScrapeEndpoint {
    port?: string;
    targetPort?: number | string;
}

export interface PodMetricsEndpoint extends ScrapeEndpoint {
    port?: string;
    portNumber?: number;
}

export interface ServiceMonitor {
    apiVersion: "monitoring.coreos.com/v1";
    kind: "ServiceMonitor";
    metadata: ObjectMeta;
    spec: {
        selector: LabelSelector;
        namespaceSelector?: NamespaceSelector;
        endpoints: Endpoint[];
        jobLabel?: string;
        targetLabels?: string[];
        podTargetLabels?: string[];
        sampleLimit?: number;
    };
}

export interface PodMonitor {
    apiVersion: "monitoring.coreos.com/v1";
    kind: "PodMonitor";
    metadata: ObjectMeta;
    spec: {
        selector: LabelSelector;
        namespaceSelector?: NamespaceSelector;
        podMetricsEndpoints: PodMetricsEndpoint[];
        jobLabel?: string;
        podTargetLabels?: string[];
        sampleLimit?: number;
    };
}
