{{/*
Every environment variable the fraudops containers get is defined in this file and nowhere else.
The units read FRAUDOPS_* through pydantic-settings (prefix FRAUDOPS_, nested delimiter "__"; see
fraudops/settings.py). Secrets are referenced with secretKeyRef, never copied into the chart.
*/}}

{{- define "fraudops.kafkaBootstrap" -}}
{{- if .Values.kafka.bootstrapServers }}{{ .Values.kafka.bootstrapServers }}
{{- else if .Values.strimzi.enabled }}{{ printf "%s-kafka-bootstrap.%s.svc:9092" .Values.strimzi.clusterName (include "fraudops.strimziNamespace" .) }}
{{- else }}{{ fail "kafka.bootstrapServers is required unless strimzi.enabled is true" }}
{{- end }}
{{- end }}

{{- define "fraudops.strimziNamespace" -}}
{{- default .Release.Namespace .Values.strimzi.namespace }}
{{- end }}

{{- define "fraudops.mlflowTrackingUri" -}}
{{- if .Values.mlflow.enabled }}{{ printf "http://%s.%s.svc:%v" (include "fraudops.unitName" (dict "ctx" . "unit" "mlflow")) .Release.Namespace .Values.mlflow.port }}
{{- else }}{{ required "mlflow.externalTrackingUri is required when mlflow.enabled is false" .Values.mlflow.externalTrackingUri }}
{{- end }}
{{- end }}

{{- define "fraudops.predictorName" -}}
{{- include "fraudops.unitName" (dict "ctx" . "unit" "predictor") }}
{{- end }}

{{- define "fraudops.predictorUrl" -}}
{{- if .Values.consumer.predictorUrl }}{{ .Values.consumer.predictorUrl }}
{{- else }}{{ printf "http://%s-predictor.%s.svc.cluster.local" (include "fraudops.predictorName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "fraudops.kfpNamespace" -}}
{{- default .Release.Namespace .Values.pipeline.kfpNamespace }}
{{- end }}

{{/* Name of the Secret holding the bundled PostgreSQL password. */}}
{{- define "fraudops.postgresSecret" -}}
{{- default (include "fraudops.unitName" (dict "ctx" . "unit" "postgresql")) .Values.postgresql.existingSecret }}
{{- end }}

{{- define "fraudops.postgresHost" -}}
{{- printf "%s.%s.svc" (include "fraudops.unitName" (dict "ctx" . "unit" "postgresql")) .Release.Namespace }}
{{- end }}

{{- define "fraudops.env.secret" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}

{{/* Referenced by name elsewhere (the KEDA TriggerAuthentication reads it from the consumer). */}}
{{- define "fraudops.envName.saslUsername" -}}FRAUDOPS_KAFKA__SASL_USERNAME{{- end }}

{{/* Kafka connection and topic names: gateway, consumer, topic creation. */}}
{{- define "fraudops.env.kafka" -}}
{{- $k := .Values.kafka -}}
- name: FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS
  value: {{ include "fraudops.kafkaBootstrap" . | quote }}
- name: FRAUDOPS_KAFKA__SECURITY_PROTOCOL
  value: {{ $k.securityProtocol | quote }}
{{- if $k.saslMechanism }}
- name: FRAUDOPS_KAFKA__SASL_MECHANISM
  value: {{ $k.saslMechanism | quote }}
- name: {{ include "fraudops.envName.saslUsername" . }}
  value: {{ $k.saslUsername | quote }}
{{- end }}
{{- if $k.saslPassword.existingSecret }}
{{ include "fraudops.env.secret" (dict "name" "FRAUDOPS_KAFKA__SASL_PASSWORD" "secret" $k.saslPassword.existingSecret "key" $k.saslPassword.key) }}
{{- end }}
- name: FRAUDOPS_KAFKA__TOPICS__TRANSACTIONS
  value: {{ $k.topics.transactions.name | quote }}
- name: FRAUDOPS_KAFKA__TOPICS__DECISIONS
  value: {{ $k.topics.decisions.name | quote }}
- name: FRAUDOPS_KAFKA__TOPICS__ALERTS
  value: {{ $k.topics.alerts.name | quote }}
- name: FRAUDOPS_KAFKA__TOPICS__LABELS
  value: {{ $k.topics.labels.name | quote }}
- name: FRAUDOPS_KAFKA__TOPICS__DEAD_LETTER
  value: {{ $k.topics.deadLetter.name | quote }}
{{- with .Values.consumer.entityStages.topics }}
- name: FRAUDOPS_KAFKA__TOPICS__BY_MERCHANT
  value: {{ .byMerchant | quote }}
- name: FRAUDOPS_KAFKA__TOPICS__BY_DEVICE
  value: {{ .byDevice | quote }}
- name: FRAUDOPS_KAFKA__TOPICS__ENRICHED
  value: {{ .enriched | quote }}
{{- end }}
{{- end }}

{{/* Settings every unit shares: home and logging. */}}
{{- define "fraudops.env.common" -}}
- name: FRAUDOPS_HOME
  value: {{ include "fraudops.homeDir" . }}
- name: FRAUDOPS_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end }}

{{/* MLflow tracking and registered model names: predictor, drift job, pipeline. */}}
{{- define "fraudops.env.mlflowClient" -}}
- name: FRAUDOPS_MLFLOW__TRACKING_URI
  value: {{ include "fraudops.mlflowTrackingUri" . | quote }}
- name: FRAUDOPS_MLFLOW__EXPERIMENT
  value: {{ .Values.mlflow.experiment | quote }}
- name: FRAUDOPS_MLFLOW__MODELS__SEQUENCE
  value: {{ .Values.predictor.models.sequenceModelName | quote }}
- name: FRAUDOPS_MLFLOW__MODELS__AUTOENCODER
  value: {{ .Values.predictor.models.autoencoderModelName | quote }}
{{- end }}

{{/* Suspicious-transaction store: an existing Secret, or the bundled PostgreSQL. */}}
{{- define "fraudops.env.database" -}}
{{- if .Values.database.existingSecret }}
{{ include "fraudops.env.secret" (dict "name" "FRAUDOPS_DATABASE__URL" "secret" .Values.database.existingSecret "key" .Values.database.key) }}
{{- else if .Values.postgresql.enabled }}
{{- /* libpq (psycopg) reads PGPASSWORD, so the URL carries no password and needs no escaping. */}}
{{ include "fraudops.env.secret" (dict "name" "PGPASSWORD" "secret" (include "fraudops.postgresSecret" .) "key" "password") }}
- name: FRAUDOPS_DATABASE__URL
  value: {{ printf "postgresql+psycopg://%s@%s:5432/%s" .Values.postgresql.username (include "fraudops.postgresHost" .) .Values.postgresql.database | quote }}
{{- end }}
{{- end }}

{{/* The schema migration Job (`fraudops db upgrade`): the same store as the consumer's. */}}
{{- define "fraudops.env.migrations" -}}
{{ include "fraudops.env.common" . }}
{{ include "fraudops.env.database" . }}
{{- end }}

{{- define "fraudops.env.gateway" -}}
{{ include "fraudops.env.common" . }}
{{ include "fraudops.env.kafka" . }}
{{ include "fraudops.env.database" . }}
- name: FRAUDOPS_GATEWAY__HOST
  value: "0.0.0.0"
- name: FRAUDOPS_GATEWAY__PORT
  value: {{ .Values.gateway.port | quote }}
{{- with .Values.drift.reportsDir }}
- name: FRAUDOPS_GATEWAY__REPORTS_DIR
  value: {{ . | quote }}
{{- end }}
- name: FRAUDOPS_GATEWAY__PREDICTOR_URL
  value: {{ include "fraudops.predictorUrl" . | quote }}
{{- if .Values.gateway.apiKeys.existingSecret }}
{{ include "fraudops.env.secret" (dict "name" "FRAUDOPS_GATEWAY__API_KEYS" "secret" .Values.gateway.apiKeys.existingSecret "key" .Values.gateway.apiKeys.key) }}
{{- end }}
{{- $g := .Values.gateway }}
- name: FRAUDOPS_GATEWAY__MAX_BODY_BYTES
  value: {{ $g.limits.maxBodyBytes | quote }}
- name: FRAUDOPS_GATEWAY__BODY_TIMEOUT_S
  value: {{ $g.limits.bodyTimeoutSeconds | quote }}
- name: FRAUDOPS_GATEWAY__REQUEST_TIMEOUT_S
  value: {{ $g.limits.requestTimeoutSeconds | quote }}
- name: FRAUDOPS_GATEWAY__AUTH_FAILURE_LIMIT
  value: {{ $g.limits.authFailureLimit | quote }}
- name: FRAUDOPS_GATEWAY__FORWARDED_ALLOW_IPS
  value: {{ $g.forwardedAllowIps | quote }}
- name: FRAUDOPS_GATEWAY__DOCS_ENABLED
  value: {{ $g.docsEnabled | quote }}
{{- with $g.trustedProxy.identityHeader }}
- name: FRAUDOPS_GATEWAY__TRUSTED_IDENTITY_HEADER
  value: {{ . | quote }}
- name: FRAUDOPS_GATEWAY__TRUSTED_PROXY_PRINCIPALS
  value: {{ join "," $g.trustedProxy.principals | quote }}
{{- end }}
{{- if $g.allowedHosts }}
{{- $svc := include "fraudops.unitName" (dict "ctx" . "unit" "gateway") }}
{{- $hosts := list "$(POD_IP)" "localhost" "127.0.0.1" $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- if $g.ingress.enabled }}{{ $hosts = append $hosts $g.ingress.host }}{{ end }}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: FRAUDOPS_GATEWAY__ALLOWED_HOSTS
  value: {{ join "," (concat $hosts $g.allowedHosts) | quote }}
{{- end }}
{{- with include "fraudops.env.rules" (dict "ctx" . "prefix" "FRAUDOPS_GATEWAY") | trim }}
{{ . }}
{{- end }}
{{ include "fraudops.env.console" . }}
{{- with .Values.gateway.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fraudops.env.consumer" -}}
{{- $n := .Values.consumer.notify -}}
{{ include "fraudops.env.common" . }}
{{ include "fraudops.env.kafka" . }}
{{ include "fraudops.env.database" . }}
- name: FRAUDOPS_CONSUMER__GROUP_ID
  value: {{ .Values.consumer.groupId | quote }}
- name: FRAUDOPS_CONSUMER__METRICS_PORT
  value: {{ .Values.consumer.metricsPort | quote }}
- name: FRAUDOPS_CONSUMER__PREDICTOR_URL
  value: {{ include "fraudops.predictorUrl" . | quote }}
- name: FRAUDOPS_CONSUMER__ENTITY_STAGES
  value: {{ .Values.consumer.entityStages.enabled | quote }}
{{- if $n.smtpHost }}
- name: FRAUDOPS_NOTIFY__SMTP_HOST
  value: {{ $n.smtpHost | quote }}
- name: FRAUDOPS_NOTIFY__SMTP_PORT
  value: {{ $n.smtpPort | quote }}
- name: FRAUDOPS_NOTIFY__SMTP_STARTTLS
  value: {{ $n.smtpStarttls | quote }}
- name: FRAUDOPS_NOTIFY__EMAIL_FROM
  value: {{ $n.emailFrom | quote }}
- name: FRAUDOPS_NOTIFY__EMAIL_TO
  value: {{ toJson $n.emailTo | quote }}
{{- end }}
{{- if $n.existingSecret }}
{{- range $var, $key := dict "FRAUDOPS_NOTIFY__SMTP_USERNAME" "smtp-username" "FRAUDOPS_NOTIFY__SMTP_PASSWORD" "smtp-password" "FRAUDOPS_NOTIFY__WEBHOOK_URL" "webhook-url" "FRAUDOPS_NOTIFY__WEBHOOK_TOKEN" "webhook-token" }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $n.existingSecret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end }}
{{- with include "fraudops.env.rules" (dict "ctx" . "prefix" "FRAUDOPS_CONSUMER") | trim }}
{{ . }}
{{- end }}
{{- with .Values.consumer.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The rule set mounted by fraudops.rulesVolume. Call with (dict "ctx" $ "prefix" "FRAUDOPS_CONSUMER"). */}}
{{- define "fraudops.env.rules" -}}
{{- if .ctx.Values.rules.enabled }}
- name: {{ .prefix }}__RULES_PATH
  value: {{ printf "%s/rules.yaml" (include "fraudops.rulesDir" .ctx) | quote }}
- name: {{ .prefix }}__RULES_REFRESH_S
  value: {{ .ctx.Values.rules.refreshSeconds | quote }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the console's session key: the existing one or the chart's. */}}
{{- define "fraudops.consoleSecret" -}}
{{- default (include "fraudops.unitName" (dict "ctx" . "unit" "gateway-console")) .Values.gateway.console.existingSecret }}
{{- end }}

{{/* The analyst console: one session key for every replica, from a Secret. */}}
{{- define "fraudops.env.console" -}}
{{- $c := .Values.gateway.console -}}
- name: FRAUDOPS_GATEWAY__CONSOLE_ENABLED
  value: {{ $c.enabled | quote }}
{{- if $c.enabled }}
{{ include "fraudops.env.secret" (dict "name" "FRAUDOPS_GATEWAY__CONSOLE_SESSION_SECRET" "secret" (include "fraudops.consoleSecret" .) "key" $c.key) }}
- name: FRAUDOPS_GATEWAY__CONSOLE_COOKIE_SECURE
  value: {{ $c.cookieSecure | quote }}
- name: FRAUDOPS_GATEWAY__CONSOLE_SESSION_MAX_AGE_S
  value: {{ $c.sessionMaxAgeSeconds | quote }}
- name: FRAUDOPS_GATEWAY__CONSOLE_PAGE_SIZE
  value: {{ $c.pageSize | quote }}
{{- end }}
{{- end }}

{{/* Predictor. Call with (dict "ctx" $ "alias" "champion" "storageUri" "..."). */}}
{{- define "fraudops.env.predictor" -}}
{{- $m := .ctx.Values.predictor.models -}}
{{ include "fraudops.env.common" .ctx }}
{{ include "fraudops.env.mlflowClient" .ctx }}
- name: FRAUDOPS_PREDICTOR__HTTP_PORT
  value: {{ .ctx.Values.predictor.port | quote }}
- name: FRAUDOPS_PREDICTOR__DEVICE
  value: {{ ternary "cuda" "cpu" .ctx.Values.predictor.gpu.enabled | quote }}
- name: FRAUDOPS_PREDICTOR__BACKEND
  value: {{ .ctx.Values.predictor.backend | quote }}
- name: FRAUDOPS_PREDICTOR__TORCH_THREADS
  value: {{ .ctx.Values.predictor.threads | quote }}
- name: FRAUDOPS_PREDICTOR__INLINE_ROWS
  value: {{ .ctx.Values.predictor.inlineRows | quote }}
{{- if eq $m.source "storage" }}
- name: STORAGE_URI
  value: {{ required "predictor.models.storageUri is required when models.source is storage" .storageUri | quote }}
- name: FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI
  value: /mnt/models/sequence
- name: FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI
  value: /mnt/models/autoencoder
{{- else }}
- name: FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI
  value: {{ printf "models:/%s@%s" $m.sequenceModelName .alias | quote }}
- name: FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI
  value: {{ printf "models:/%s@%s" $m.autoencoderModelName .alias | quote }}
{{- end }}
{{- with .ctx.Values.predictor.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fraudops.env.kfp" -}}
- name: FRAUDOPS_KFP__HOST
  value: {{ .Values.pipeline.kfpHost | quote }}
{{- /* Empty for standalone (single-user) KFP, which refuses namespaced API calls. */}}
- name: FRAUDOPS_KFP__NAMESPACE
  value: {{ .Values.pipeline.kfpNamespace | quote }}
- name: FRAUDOPS_KFP__PIPELINE_NAME
  value: {{ .Values.pipeline.name | quote }}
- name: FRAUDOPS_KFP__EXPERIMENT
  value: {{ .Values.pipeline.experiment | quote }}
{{- end }}

{{/* What only the pipeline unit (compile/upload/schedule) reads. */}}
{{- define "fraudops.env.kfpPipeline" -}}
- name: FRAUDOPS_KFP__IMAGE
  value: {{ include "fraudops.image" (dict "ctx" . "name" .Values.pipeline.imageName) | quote }}
- name: FRAUDOPS_KFP__CRON
  value: {{ .Values.pipeline.recurringRun.cron | quote }}
- name: FRAUDOPS_KFP__PREDICTOR_NAME
  value: {{ include "fraudops.predictorName" . | quote }}
- name: FRAUDOPS_KFP__PREDICTOR_NAMESPACE
  value: {{ .Release.Namespace | quote }}
- name: FRAUDOPS_KFP__CANARY_PERCENT
  value: {{ .Values.pipeline.canaryPercent | quote }}
{{- end }}

{{- define "fraudops.env.pipeline" -}}
{{ include "fraudops.env.common" . }}
{{ include "fraudops.env.mlflowClient" . }}
{{ include "fraudops.env.kfp" . }}
{{ include "fraudops.env.kfpPipeline" . }}
{{- end }}

{{- define "fraudops.env.drift" -}}
{{ include "fraudops.env.common" . }}
{{ include "fraudops.env.mlflowClient" . }}
{{ include "fraudops.env.kfp" . }}
{{ include "fraudops.env.database" . }}
- name: FRAUDOPS_DRIFT__TRIGGER_RETRAINING
  value: {{ .Values.drift.triggerRetraining | quote }}
- name: FRAUDOPS_RETRAIN__LAUNCHER
  value: {{ ternary "kfp" "none" .Values.drift.triggerRetraining | quote }}
{{- with .Values.drift.reportsDir }}
- name: FRAUDOPS_DRIFT__REPORTS_DIR
  value: {{ . | quote }}
{{- end }}
{{- with .Values.drift.pushgatewayUrl }}
- name: FRAUDOPS_DRIFT__PUSHGATEWAY_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.drift.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fraudops.env.topics" -}}
{{ include "fraudops.env.kafka" . }}
- name: FRAUDOPS_TOPICS_SPEC
  value: {{ include "fraudops.topicsSpec" . | quote }}
- name: FRAUDOPS_TOPICS_TIMEOUT_SECONDS
  value: {{ .Values.kafka.createTopicsJob.timeoutSeconds | quote }}
{{- end }}

{{/* Every topic (key -> {name, partitions, replicas, config}) as JSON: kafka.topics and, with the
entity stages, their internal topics, partitioned and replicated like transactions (records
keep their partition's entities: as many partitions as the input). */}}
{{- define "fraudops.topics" -}}
{{- $topics := deepCopy .Values.kafka.topics -}}
{{- $s := .Values.consumer.entityStages -}}
{{- if and .Values.consumer.enabled $s.enabled }}
{{- $tx := .Values.kafka.topics.transactions -}}
{{- range $key, $name := $s.topics }}
{{- $_ := set $topics $key (dict "name" $name "partitions" $tx.partitions "replicas" $tx.replicas "config" (dict)) }}
{{- end }}
{{- end }}
{{- toJson $topics }}
{{- end }}

{{/* The topics as JSON [{name, partitions, replicas, config}], for the topic-creation Job. */}}
{{- define "fraudops.topicsSpec" -}}
{{- $topics := list -}}
{{- range $key, $t := include "fraudops.topics" . | fromJson }}
{{- $topics = append $topics (dict "name" $t.name "partitions" $t.partitions "replicas" $t.replicas "config" $t.config) }}
{{- end }}
{{- toJson $topics }}
{{- end }}

{{/* MLflow server: backend store URI and S3 credentials. */}}
{{- define "fraudops.env.mlflow" -}}
{{- $a := .Values.mlflow.artifacts -}}
{{- if .Values.mlflow.backendStore.existingSecret }}
{{ include "fraudops.env.secret" (dict "name" "MLFLOW_BACKEND_STORE_URI" "secret" .Values.mlflow.backendStore.existingSecret "key" .Values.mlflow.backendStore.key) }}
{{- else if .Values.postgresql.enabled }}
{{ include "fraudops.env.secret" (dict "name" "PGPASSWORD" "secret" (include "fraudops.postgresSecret" .) "key" "password") }}
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "postgresql+psycopg://%s@%s:5432/%s" .Values.postgresql.username (include "fraudops.postgresHost" .) .Values.postgresql.mlflowDatabase | quote }}
{{- else }}
{{- fail "mlflow.backendStore.existingSecret is required unless postgresql.enabled is true" }}
{{- end }}
{{- if $a.s3EndpointUrl }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ $a.s3EndpointUrl | quote }}
{{- end }}
{{- if $a.existingSecret }}
{{ include "fraudops.env.secret" (dict "name" "AWS_ACCESS_KEY_ID" "secret" $a.existingSecret "key" "AWS_ACCESS_KEY_ID") }}
{{ include "fraudops.env.secret" (dict "name" "AWS_SECRET_ACCESS_KEY" "secret" $a.existingSecret "key" "AWS_SECRET_ACCESS_KEY") }}
{{- end }}
- name: HOME
  value: {{ include "fraudops.homeDir" . }}
{{- /* MLflow 3 rejects unknown Host headers (DNS-rebinding guard): allow the Service's names,
loopback and pod IPs (kubelet probes), plus mlflow.allowedHosts. */}}
{{- $svc := include "fraudops.unitName" (dict "ctx" . "unit" "mlflow") }}
{{- $hosts := list }}
{{- range $name := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) }}
{{- $hosts = concat $hosts (list $name (printf "%s:*" $name)) }}
{{- end }}
{{- $hosts = concat $hosts (list "localhost:*" "127.0.0.1:*" "10.*" "172.*" "192.168.*" "fd*") .Values.mlflow.allowedHosts }}
- name: MLFLOW_SERVER_ALLOWED_HOSTS
  value: {{ join "," $hosts | quote }}
{{- end }}
