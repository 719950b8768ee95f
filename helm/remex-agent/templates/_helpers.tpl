{{/* Prefix of every object's name. */}}
{{- define "remex.prefix" -}}
{{- default .Release.Name .Values.resourceNamePrefix | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "remex.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{- define "remex.image" -}}
{{- $i := .Values.image | default dict -}}
{{- printf "%s:%s" ($i.repository | default "ghcr.io/remex/remex") ($i.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "remex.serviceAccountName" -}}
{{- $sa := .Values.serviceAccount | default dict -}}
{{- if $sa.name -}}{{ $sa.name }}{{- else if (dig "create" true $sa) -}}{{ include "remex.prefix" . }}-agent{{- else -}}default{{- end -}}
{{- end -}}

{{/* Labels of every object; the selector labels are a stable subset. */}}
{{- define "remex.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: remex-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "remex.metadata" -}}
namespace: {{ include "remex.namespace" . }}
labels:
  {{- include "remex.labels" . | nindent 2 }}
{{- with .Values.annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Token source: "secret" (a Secret mounted and copied 0400), "file" or "". */}}
{{- define "remex.tokenSource" -}}
{{- if or .Values.agentToken .Values.agentTokenSecretName -}}secret{{- else if .Values.agentTokenFile -}}file{{- end -}}
{{- end -}}

{{- define "remex.tokenSecretName" -}}
{{- if .Values.agentTokenSecretName -}}{{ .Values.agentTokenSecretName }}{{- else -}}{{ include "remex.prefix" . }}-token{{- end -}}
{{- end -}}

{{/*
Secret files the pods need, as a list of {volume, secret, key, file}: each Secret is mounted in
the init container only and copied to the memory-backed /run/remex/secrets with mode 0400 and
the pod's uid (a Secret volume under fsGroup is 0440, which remex refuses).
*/}}
{{- define "remex.secretFiles" -}}
{{- $out := list -}}
{{- if eq (include "remex.tokenSource" .) "secret" -}}
{{- $out = append $out (dict "volume" "src-token" "secret" (include "remex.tokenSecretName" .) "key" "token" "file" "agent-token") -}}
{{- end -}}
{{- $sb := .Values.secretsBackend | default dict -}}
{{- if $sb.secretName -}}
{{- $out = append $out (dict "volume" "src-secrets" "secret" $sb.secretName "key" ($sb.key | default "secrets.yaml") "file" "secrets.yaml") -}}
{{- end -}}
{{- range $i, $b := .Values.bundles | default list -}}
{{- with $b.git -}}
{{- if .tokenSecretName -}}
{{- $out = append $out (dict "volume" (printf "src-git-token-%d" $i) "secret" .tokenSecretName "key" (.tokenSecretKey | default "token") "file" (printf "git-%s-token" $b.name)) -}}
{{- end -}}
{{- if .sshKeySecretName -}}
{{- $out = append $out (dict "volume" (printf "src-git-ssh-%d" $i) "secret" .sshKeySecretName "key" (.sshKeySecretKey | default "ssh-privatekey") "file" (printf "git-%s-ssh-key" $b.name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The roles of the agent besides the workers. */}}
{{- define "remex.extraRoles" -}}
{{- $r := list -}}
{{- if dig "enabled" false (.Values.dagProcessor | default dict) }}{{ $r = append $r "dag-processor" }}{{ end -}}
{{- if dig "enabled" false (.Values.triggerer | default dict) }}{{ $r = append $r "triggerer" }}{{ end -}}
{{- if dig "enabled" false (.Values.sentinel | default dict) }}{{ $r = append $r "sentinel" }}{{ end -}}
{{- toJson $r -}}
{{- end -}}

{{/*
agent.yaml. Argument: dict root (the chart's top context), group (a workers[] entry for the
worker section, or nil) and allInOne (bool). Only keys remex's key table (lib/agentcfg.c) has.
*/}}
{{- define "remex.agentYaml" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $w := $v.worker | default dict -}}
{{- $td := $w.taskDefaults | default dict -}}
{{- $g := .group | default dict -}}
{{- $prefix := include "remex.prefix" $root -}}
{{- $tokenSource := include "remex.tokenSource" $root -}}
# Rendered by the remex-agent chart; check it with `remex-agent -c agent.yaml --check`.
plane:
  url: {{ $v.planeURL | quote }}
  {{- if eq $tokenSource "secret" }}
  token: {file: /run/remex/secrets/agent-token}
  {{- else if eq $tokenSource "file" }}
  token: {file: {{ $v.agentTokenFile | quote }}}
  {{- end }}
  {{- if $v.planeCASecretName }}
  ca_file: /etc/remex/ca/ca.crt
  {{- else if $v.planeCAFile }}
  ca_file: {{ $v.planeCAFile | quote }}
  {{- end }}
state_dir: {{ $v.stateDir | default "/var/lib/remex" | quote }}
logs:
  level: {{ dig "level" "info" ($v.logs | default dict) }}
  format: {{ dig "format" "json" ($v.logs | default dict) }}
  {{- with ($v.objectStorage | default dict).logs }}
  store: {{ . | quote }}
  {{- end }}
worker:
  name: {{ printf "%s-%s" $prefix ($g.name | default "worker") | quote }}
  queues: {{ $g.queues | default $w.queues | default (list "default") | toJson }}
  slots: {{ $g.slots | default $w.slots | default 0 | int }}
  log_dir: {{ $v.logDir | default "/var/log/remex/tasks" | quote }}
  {{- if and .group (not .allInOne) }}
  listen: {{ printf "0.0.0.0:%d" (int ($w.healthPort | default 9465)) | quote }}
  {{- end }}
  log_max_bytes: {{ $w.logMaxBytes | default "100MiB" | quote }}
  poll_wait: {{ $w.pollWait | default "30s" | quote }}
  drain_grace: {{ $w.drainGrace | default "570s" | quote }}
  task_defaults:
    grace_period: {{ $td.gracePeriod | default "10s" | quote }}
    memory_limit: {{ $td.memoryLimit | default "0" | quote }}
    memory_enforcement: {{ $td.memoryEnforcement | default "auto" }}
    cpu_time: {{ $td.cpuTime | default "0" | quote }}
{{- $bundles := $v.bundles | default list }}
{{- if $bundles }}
bundles:
  {{- range $bundles }}
  {{- if .git }}
  - name: {{ .name | quote }}
    url: {{ .git.url | quote }}
    {{- with .git.ref }}
    tracking_ref: {{ . | quote }}
    {{- end }}
    {{- with .git.subdir }}
    subdir: {{ . | quote }}
    {{- end }}
    {{- with .git.refreshInterval }}
    refresh_interval: {{ . | quote }}
    {{- end }}
    {{- if .git.tokenSecretName }}
    token: {file: {{ printf "/run/remex/secrets/git-%s-token" .name | quote }}}
    {{- end }}
    {{- if .git.sshKeySecretName }}
    ssh_key: {{ printf "/run/remex/secrets/git-%s-ssh-key" .name | quote }}
    {{- end }}
    {{- with .git.knownHostsFile }}
    known_hosts: {{ . | quote }}
    {{- end }}
  {{- else }}
  - {name: {{ .name | quote }}, path: {{ .path | quote }}}
  {{- end }}
  {{- end }}
{{- end }}
{{- $sbv := $v.secretsBackend | default dict }}
{{- if or $sbv.secretName $sbv.config }}
secrets:
  {{- if $sbv.secretName }}
  file: /run/remex/secrets/secrets.yaml
  {{- end }}
  {{- with $sbv.config }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
{{- with ($v.objectStorage | default dict).xcom }}
xcom:
  store: {{ . | quote }}
{{- end }}
{{- $dp := $v.dagProcessor | default dict }}
{{- if dig "enabled" false $dp }}
{{- $dc := $dp.config | default dict }}
{{- if not .allInOne }}{{ $dc = merge (dict "listen" (printf "0.0.0.0:%d" (int ($dp.healthPort | default 9466)))) $dc }}{{ end }}
{{- if $dc }}
dag_processor:
  {{- toYaml $dc | nindent 2 }}
{{- end }}
{{- end }}
{{- $tr := $v.triggerer | default dict }}
{{- if dig "enabled" false $tr }}
{{- $tc := $tr.config | default dict }}
{{- if $tr.capacity }}{{ $tc = merge (dict "capacity" $tr.capacity) $tc }}{{ end }}
{{- if not .allInOne }}{{ $tc = merge (dict "listen" (printf "0.0.0.0:%d" (int ($tr.healthPort | default 9467)))) $tc }}{{ end }}
{{- if $tc }}
triggerer:
  {{- toYaml $tc | nindent 2 }}
{{- end }}
{{- end }}
{{- $se := $v.sentinel | default dict }}
{{- if dig "enabled" false $se }}
sentinel:
  {{- toYaml (merge (dict "listen" (printf "0.0.0.0:%d" (int (dig "port" 9464 $se)))) ($se.config | default dict)) | nindent 2 }}
{{- end }}
agent:
  {{- if .allInOne }}
  roles: {{ concat (list "worker") (include "remex.extraRoles" $root | fromJsonArray) | toJson }}
  workers:
    {{- range $v.workers | default (list (dict "name" "default")) }}
    - name: {{ printf "%s-%s" $prefix .name | quote }}
      queues: {{ .queues | default $w.queues | default (list "default") | toJson }}
      slots: {{ .slots | default $w.slots | default 0 | int }}
    {{- end }}
  {{- else }}
  roles: [worker]
  {{- end }}
{{- end -}}

{{/*
Pod template of a remex Deployment. Argument: dict
  root       the chart's top context
  component  worker | agent | dag-processor | triggerer | sentinel
  group      the workers[] entry (worker) or the role's values block
  configKey  the ConfigMap key mounted as /etc/remex/agent.yaml
  roles      the --roles of remex-agent ("" in allInOne mode: agent.roles)
  nameEnv    REMEX_*_NAME set to the pod's name, so replicas register apart ("" for none)
  httpHealth the port its HTTP probes use (0: exec probes on the control socket)
  roleHealth true: the role's own /healthz (readiness) and /livez (liveness) on httpHealth;
             false: the sentinel's /health
*/}}
{{- define "remex.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $g := .group | default dict -}}
{{- $secretFiles := include "remex.secretFiles" $root | fromJsonArray -}}
{{- $cfg := include "remex.agentYaml" (dict "root" $root "group" .cfgGroup "allInOne" (eq .component "agent")) -}}
metadata:
  labels:
    {{- include "remex.selectorLabels" (dict "root" $root "component" .component "group" .groupName) | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ $cfg | sha256sum }}
    {{- if $v.agentToken }}
    checksum/token: {{ $v.agentToken | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ $g.serviceAccountName | default (include "remex.serviceAccountName" $root) }}
  automountServiceAccountToken: {{ dig "automountToken" false ($v.serviceAccount | default dict) }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .grace }}
  securityContext:
    {{- include "remex.podSecurityContext" $root | nindent 4 }}
  {{- with $g.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $g.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $secretFiles }}
  initContainers:
    # Secret volumes under fsGroup are group-readable (0440) and remex refuses those: copy
    # each file, mode 0400 and owned by the pod's user, to a memory-backed folder.
    - name: secret-files
      image: {{ include "remex.image" $root }}
      imagePullPolicy: {{ dig "pullPolicy" "IfNotPresent" ($v.image | default dict) }}
      command: [install, -m, "0400", -t, /run/remex/secrets]
      args:
        {{- range $secretFiles }}
        - /etc/remex/secret-src/{{ .volume }}/{{ .file }}
        {{- end }}
      securityContext:
        {{- include "remex.containerSecurityContext" $root | nindent 8 }}
      resources:
        requests: {cpu: 10m, memory: 16Mi}
        limits: {memory: 32Mi}
      volumeMounts:
        - {name: secret-files, mountPath: /run/remex/secrets}
        {{- range $secretFiles }}
        - {name: {{ .volume }}, mountPath: /etc/remex/secret-src/{{ .volume }}, readOnly: true}
        {{- end }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "remex.image" $root }}
      imagePullPolicy: {{ dig "pullPolicy" "IfNotPresent" ($v.image | default dict) }}
      command: [remex-agent]
      args:
        - -c
        - /etc/remex/agent.yaml
        {{- if .roles }}
        - --roles
        - {{ .roles }}
        {{- end }}
      env:
        {{- if .nameEnv }}
        - name: {{ .nameEnv }}
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        {{- end }}
        {{- with $v.commonEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $g.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if .httpHealth }}
      ports:
        - {name: health, containerPort: {{ .httpHealth }}, protocol: TCP}
      {{- end }}
      {{- $exec := dict "exec" (dict "command" (list "remex-agent" "-c" "/etc/remex/agent.yaml" "status")) -}}
      {{- $probe := $exec -}}
      {{- $live := $probe -}}
      {{- if .httpHealth }}
      {{- if .roleHealth }}
      {{- $probe = dict "httpGet" (dict "path" "/healthz" "port" "health") }}
      {{- $live = dict "httpGet" (dict "path" "/livez" "port" "health") }}
      {{- else }}
      {{- $probe = dict "httpGet" (dict "path" "/health" "port" "health") }}
      {{- $live = $probe }}
      {{- end }}
      {{- end }}
      livenessProbe:
        {{- toYaml ($g.livenessProbe | default (merge (dict "periodSeconds" 30 "timeoutSeconds" 10 "failureThreshold" 4) $live)) | nindent 8 }}
      readinessProbe:
        {{- toYaml ($g.readinessProbe | default (merge (dict "periodSeconds" 10 "timeoutSeconds" 10 "failureThreshold" 3) $probe)) | nindent 8 }}
      {{- with $g.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "remex.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - {name: config, mountPath: /etc/remex/agent.yaml, subPath: agent.yaml, readOnly: true}
        - {name: state, mountPath: {{ $v.stateDir | default "/var/lib/remex" | quote }}}
        - {name: logs, mountPath: {{ $v.logDir | default "/var/log/remex/tasks" | quote }}}
        - {name: tmp, mountPath: /tmp}
        {{- if $secretFiles }}
        - {name: secret-files, mountPath: /run/remex/secrets, readOnly: true}
        {{- end }}
        {{- if $v.planeCASecretName }}
        - {name: plane-ca, mountPath: /etc/remex/ca, readOnly: true}
        {{- end }}
        {{- range $i, $b := $v.bundles | default list }}
        {{- if and (not $b.git) $b.volume }}
        - {name: bundle-{{ $i }}, mountPath: {{ $b.path | quote }}, readOnly: true}
        {{- end }}
        {{- end }}
        {{- with $v.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "remex.prefix" $root }}-config
        items:
          - {key: {{ .configKey }}, path: agent.yaml}
    {{- $limit := $v.scratchSizeLimit | default "2Gi" }}
    {{- if $v.stateVolume }}
    - name: state
      {{- toYaml $v.stateVolume | nindent 6 }}
    {{- else }}
    - name: state
      emptyDir: {sizeLimit: {{ $limit }}}
    {{- end }}
    - name: logs
      emptyDir: {sizeLimit: {{ $limit }}}
    - name: tmp
      emptyDir: {sizeLimit: {{ $limit }}}
    {{- if $secretFiles }}
    - name: secret-files
      emptyDir: {medium: Memory, sizeLimit: 1Mi}
    {{- range $secretFiles }}
    - name: {{ .volume }}
      secret:
        secretName: {{ .secret }}
        defaultMode: 256 # 0400: octal literals read differently in YAML 1.1 and 1.2
        items:
          - {key: {{ .key }}, path: {{ .file }}}
    {{- end }}
    {{- end }}
    {{- if $v.planeCASecretName }}
    - name: plane-ca
      secret:
        secretName: {{ $v.planeCASecretName }}
        defaultMode: 292 # 0444
        items:
          - {key: ca.crt, path: ca.crt}
    {{- end }}
    {{- range $i, $b := $v.bundles | default list }}
    {{- if and (not $b.git) $b.volume }}
    - name: bundle-{{ $i }}
      {{- toYaml $b.volume | nindent 6 }}
    {{- end }}
    {{- end }}
    {{- with $v.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "remex.selectorLabels" -}}
app.kubernetes.io/name: remex-agent
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .group }}
remex.dev/worker-group: {{ .group }}
{{- end }}
{{- end -}}

{{/* The security contexts; left out of the values, they are the restricted defaults. */}}
{{- define "remex.podSecurityContext" -}}
{{- toYaml (.Values.podSecurityContext | default (dict "runAsNonRoot" true "runAsUser" 50000 "runAsGroup" 50000 "fsGroup" 50000 "seccompProfile" (dict "type" "RuntimeDefault"))) -}}
{{- end -}}

{{- define "remex.containerSecurityContext" -}}
{{- toYaml (.Values.containerSecurityContext | default (dict "readOnlyRootFilesystem" true "allowPrivilegeEscalation" false "runAsNonRoot" true "capabilities" (dict "drop" (list "ALL")))) -}}
{{- end -}}
