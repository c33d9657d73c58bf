{{/*
Named templates of the ringlb chart. Those marked "public" are meant to be included by other
charts that put ringlb into their own pod spec (README "Helm"), with the ringlb subchart's context:
  {{ include "ringlb.sidecarContainer" .Subcharts.ringlb | nindent 8 }}
*/}}

{{- define "ringlb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ringlb.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ringlb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringlb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ringlb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ringlb.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.mode }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ringlb.configMapName" -}}
{{- .Values.existingConfigMap | default (include "ringlb.fullname" .) -}}
{{- end -}}

{{- define "ringlb.configKey" -}}
{{- if .Values.existingConfigMap -}}{{ .Values.existingConfigMapKey }}{{- else -}}ringlb.toml{{- end -}}
{{- end -}}

{{/*
The port of a numeric "IP:port" / "[IPv6]:port" address.
*/}}
{{- define "ringlb.portOf" -}}
{{- regexFind "[0-9]+$" . -}}
{{- end -}}

{{- define "ringlb.adminPort" -}}
{{- include "ringlb.portOf" .Values.config.admin.bind -}}
{{- end -}}

{{/*
Whole seconds (rounded up) of a ringlb duration ("10s", "1500ms", "1m", "1h").
*/}}
{{- define "ringlb.seconds" -}}
{{- $d := toString . -}}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h)$" $d) -}}
{{- fail (printf "ringlb: cannot read the duration %q: an integer and a unit (ms, s, m, h)" $d) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+" $d | int64 -}}
{{- $unit := regexFind "(ms|s|m|h)$" $d -}}
{{- if eq $unit "ms" -}}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" -}}{{ $n }}
{{- else if eq $unit "m" -}}{{ mul $n 60 }}
{{- else -}}{{ mul $n 3600 }}
{{- end -}}
{{- end -}}

{{/*
ringlb's drain settings in whole seconds, ringlb's defaults where the config leaves them out.
*/}}
{{- define "ringlb.drainDelaySeconds" -}}
{{- include "ringlb.seconds" ((.Values.config.runtime | default dict).drain_delay | default "0s") -}}
{{- end -}}

{{/*
How long ringlb may take from the stop decision to its exit: its preStop sleep, then the drain.
*/}}
{{- define "ringlb.stopSeconds" -}}
{{- $rt := .Values.config.runtime | default dict -}}
{{- $delay := include "ringlb.seconds" ($rt.drain_delay | default "0s") | int64 -}}
{{- $timeout := include "ringlb.seconds" ($rt.drain_timeout | default "25s") | int64 -}}
{{- $spread := include "ringlb.seconds" ($rt.drain_spread | default "5s") | int64 -}}
{{- add (.Values.ringlbPreStopSleepSeconds | int64) $delay $timeout $spread -}}
{{- end -}}

{{/*
The app's preStop sleep: app.preStopSleepSeconds, or drain_delay when null.
*/}}
{{- define "ringlb.appPreStopSeconds" -}}
{{- if kindIs "invalid" .Values.app.preStopSleepSeconds -}}
{{- include "ringlb.drainDelaySeconds" . -}}
{{- else -}}
{{- .Values.app.preStopSleepSeconds | int64 -}}
{{- end -}}
{{- end -}}

{{/*
public: the smallest terminationGracePeriodSeconds that lets ringlb (and, in sidecar mode, the
app) stop cleanly; the arithmetic is in values.yaml. Fails when terminationGracePeriodSeconds is
set below it.
*/}}
{{- define "ringlb.terminationGracePeriodSeconds" -}}
{{- $ringlb := include "ringlb.stopSeconds" . | int64 -}}
{{- $margin := .Values.terminationGraceMarginSeconds | int64 -}}
{{- $need := add $ringlb $margin -}}
{{- if eq .Values.mode "sidecar" -}}
{{- $app := add (include "ringlb.appPreStopSeconds" . | int64) (.Values.app.shutdownSeconds | int64) -}}
{{- if .Values.sidecar.native -}}
{{- $need = add $app $ringlb $margin -}}
{{- else -}}
{{- $need = add (max $app $ringlb) $margin -}}
{{- end -}}
{{- end -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- $need -}}
{{- else -}}
{{- $set := .Values.terminationGracePeriodSeconds | int64 -}}
{{- if lt $set $need -}}
{{- fail (printf "ringlb: terminationGracePeriodSeconds %d is below the %d s the drain needs (see values.yaml): the kubelet would kill ringlb during its drain; raise it, or shorten config.runtime drain_delay/drain_timeout/drain_spread" $set $need) -}}
{{- end -}}
{{- $set -}}
{{- end -}}
{{- end -}}

{{/*
One TOML value: string, integer (YAML numbers arrive as floats), boolean, array, inline table.
Strings are written as JSON strings, whose escapes are TOML's.
*/}}
{{- define "ringlb.tomlValue" -}}
{{- $k := kindOf . -}}
{{- if eq $k "string" -}}
{{- toJson . -}}
{{- else if eq $k "bool" -}}
{{- . -}}
{{- else if or (eq $k "float64") (eq $k "float32") -}}
{{- if ne (float64 (int64 .)) (float64 .) -}}
{{- fail (printf "ringlb: %v: ringlb takes integers only" .) -}}
{{- end -}}
{{- int64 . -}}
{{- else if or (hasPrefix "int" $k) (hasPrefix "uint" $k) -}}
{{- . -}}
{{- else if eq $k "slice" -}}
[{{- range $i, $e := . -}}{{- if $i -}}, {{ end -}}{{- include "ringlb.tomlValue" $e -}}{{- end -}}]
{{- else if eq $k "map" -}}
{ {{- $first := true -}}
{{- range $key := keys . | sortAlpha -}}
{{- $v := get $ $key -}}
{{- if not (kindIs "invalid" $v) -}}
{{- if not $first -}},{{- end -}}
{{- $first = false }} {{ $key }} = {{ include "ringlb.tomlValue" $v -}}
{{- end -}}
{{- end }} }
{{- else -}}
{{- fail (printf "ringlb: cannot write %v (%s) as TOML" . $k) -}}
{{- end -}}
{{- end -}}

{{/*
The keys of one table as `key = value` lines, `name` first, the others sorted; null values (a
default removed with --set key=null) are left out. `backends` comes last, one entry per line.
*/}}
{{- define "ringlb.tomlTable" -}}
{{- if hasKey . "name" }}
name = {{ include "ringlb.tomlValue" .name }}
{{- end }}
{{- range $key := keys . | sortAlpha }}
{{- $v := get $ $key }}
{{- if and (ne $key "name") (ne $key "backends") (not (kindIs "invalid" $v)) }}
{{ $key }} = {{ include "ringlb.tomlValue" $v }}
{{- end }}
{{- end }}
{{- with .backends }}
backends = [
{{- range $b := . }}
  {{ include "ringlb.tomlValue" $b }},
{{- end }}
]
{{- end }}
{{- end -}}

{{/*
public: the ringlb configuration file rendered from .Values.config.
*/}}
{{- define "ringlb.config" -}}
# ringlb configuration rendered by the ringlb Helm chart from its values (`config`).
# Check it with: ringlb check ringlb.toml
{{- with .Values.config.runtime }}

[runtime]
{{- include "ringlb.tomlTable" . }}
{{- end }}

[admin]
{{- include "ringlb.tomlTable" .Values.config.admin }}
{{- with .Values.config.log }}

[log]
{{- include "ringlb.tomlTable" . }}
{{- end }}
{{- range .Values.config.listener }}

[[listener]]
{{- include "ringlb.tomlTable" . }}
{{- end }}
{{- range .Values.config.cluster }}

[[cluster]]
{{- include "ringlb.tomlTable" . }}
{{- end }}
{{ end -}}

{{/*
public: the pod annotation that rolls the pods when the rendered configuration changes.
*/}}
{{- define "ringlb.configChecksum" -}}
{{- include "ringlb.config" . | sha256sum -}}
{{- end -}}

{{- define "ringlb.seccompProfile" -}}
{{- if eq .Values.seccomp.type "Localhost" -}}
type: Localhost
localhostProfile: {{ .Values.seccomp.localhostProfile | quote }}
{{- else -}}
type: {{ .Values.seccomp.type }}
{{- end -}}
{{- end -}}

{{- define "ringlb.httpProbe" -}}
httpGet:
  path: {{ .probe.path }}
  port: admin
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}

{{/*
public: the ringlb container. As a native sidecar (sidecar mode with sidecar.native) it carries
restartPolicy: Always and a startup probe on /ready, and belongs in initContainers; otherwise it
is a regular container.
*/}}
{{- define "ringlb.sidecarContainer" -}}
{{- $native := and (eq .Values.mode "sidecar") .Values.sidecar.native -}}
name: ringlb
image: {{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- if $native }}
restartPolicy: Always
{{- end }}
args: ["run", "/etc/ringlb/ringlb.toml"]
ports:
{{- range .Values.config.listener }}
  - name: {{ .name }}
    containerPort: {{ include "ringlb.portOf" .bind }}
    protocol: TCP
{{- end }}
  - name: admin
    containerPort: {{ include "ringlb.adminPort" . }}
    protocol: TCP
{{- if $native }}
startupProbe:
  {{- include "ringlb.httpProbe" (dict "probe" .Values.probes.startup) | nindent 2 }}
{{- end }}
livenessProbe:
  {{- include "ringlb.httpProbe" (dict "probe" .Values.probes.liveness) | nindent 2 }}
readinessProbe:
  {{- include "ringlb.httpProbe" (dict "probe" .Values.probes.readiness) | nindent 2 }}
{{- if gt (.Values.ringlbPreStopSleepSeconds | int64) 0 }}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.ringlbPreStopSleepSeconds }}
{{- end }}
{{- with .Values.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- with omit .Values.containerSecurityContext "seccompProfile" }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  # From `seccomp`, so a Localhost profile applies to ringlb only.
  seccompProfile:
    {{- include "ringlb.seccompProfile" . | nindent 4 }}
volumeMounts:
  - name: ringlb-config
    mountPath: /etc/ringlb
    readOnly: true
{{- end -}}

{{/*
public: the volume the ringlb container mounts at /etc/ringlb. A whole-directory mount (not
subPath), so the kubelet updates the file in place when the ConfigMap changes.
*/}}
{{- define "ringlb.volume" -}}
name: ringlb-config
configMap:
  name: {{ include "ringlb.configMapName" . }}
  items:
    - key: {{ include "ringlb.configKey" . }}
      path: ringlb.toml
{{- end -}}

{{/*
The application container of sidecar mode.
*/}}
{{- define "ringlb.appContainer" -}}
{{- $app := .Values.app -}}
name: {{ $app.name }}
image: {{ printf "%s:%s" $app.image.repository $app.image.tag | quote }}
imagePullPolicy: {{ $app.image.pullPolicy }}
{{- with $app.command }}
command:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $app.args }}
args:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $app.env }}
env:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $app.ports }}
ports:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $app.livenessProbe }}
livenessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $app.readinessProbe }}
readinessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $app.lifecycle }}
lifecycle:
  {{- toYaml $app.lifecycle | nindent 2 }}
{{- else if gt (include "ringlb.appPreStopSeconds" . | int64) 0 }}
lifecycle:
  preStop:
    sleep:
      seconds: {{ include "ringlb.appPreStopSeconds" . }}
{{- end }}
{{- with $app.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $app.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
