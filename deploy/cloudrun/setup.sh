#!/usr/bin/env bash
# `prodguardian watch` as a Cloud Run Job started every 5 minutes by Cloud Scheduler (docs/deploy.md walks
# through each step). Run it once from the repository's root, with gcloud signed in to the project, after
# setting the values below; export SLACK_WEBHOOK_URL first, and keep your channels file in CHANNELS_FILE.
set -euo pipefail

PROJECT=my-project
REGION=europe-west1
SERVICE=emergence-app
BUCKET=$PROJECT-prodguardian
SA=prodguardian-checker@$PROJECT.iam.gserviceaccount.com
IMAGE=$REGION-docker.pkg.dev/$PROJECT/prodguardian/prodguardian:latest
CHANNELS_FILE=deploy/channels.example.yaml

# 1. The state bucket and the job's identity (as in docs/cloud.md): Logs Viewer on the project, Storage
# Object User on the bucket only.
gcloud storage buckets create gs://$BUCKET --location=$REGION --uniform-bucket-level-access --soft-delete-duration=0
gcloud iam service-accounts create prodguardian-checker
gcloud projects add-iam-policy-binding $PROJECT --member=serviceAccount:$SA --role=roles/logging.viewer
gcloud storage buckets add-iam-policy-binding gs://$BUCKET --member=serviceAccount:$SA \
    --role=roles/storage.objectUser

# 2. The secrets, in Secret Manager, readable by the job's account only: the Slack webhook (an environment
# variable of the job) and the channels file (a file of the job; it names SLACK_WEBHOOK_URL, holds no secret).
printf '%s' "$SLACK_WEBHOOK_URL" | gcloud secrets create prodguardian-slack-webhook --data-file=-
gcloud secrets create prodguardian-channels --data-file=$CHANNELS_FILE
gcloud secrets add-iam-policy-binding prodguardian-slack-webhook --member=serviceAccount:$SA \
    --role=roles/secretmanager.secretAccessor
gcloud secrets add-iam-policy-binding prodguardian-channels --member=serviceAccount:$SA \
    --role=roles/secretmanager.secretAccessor

# 3. The image (deploy/Dockerfile), built by Cloud Build into Artifact Registry.
gcloud artifacts repositories create prodguardian --repository-format=docker --location=$REGION
gcloud builds submit --config=deploy/cloudrun/cloudbuild.yaml --substitutions=_IMAGE=$IMAGE .

# 4. The job: one watch run per execution. No retries: exit 1 (DEGRADED) and 2 (CRITICAL) mark an execution
# failed, and a retry would only check again; the next scheduled run is the retry.
gcloud run jobs create prodguardian-watch --region=$REGION --image=$IMAGE --service-account=$SA \
    --max-retries=0 --task-timeout=4m \
    --set-secrets=SLACK_WEBHOOK_URL=prodguardian-slack-webhook:latest,/etc/prodguardian/channels.yaml=prodguardian-channels:latest \
    --args=--service=$SERVICE,--region=$REGION,--freshness=15m,--state=gs://$BUCKET/prodguardian.sqlite,--channels=/etc/prodguardian/channels.yaml

# 5. The trigger: Cloud Scheduler calls the Jobs API's :run every 5 minutes, as the same account, which may
# start this job and nothing else.
gcloud run jobs add-iam-policy-binding prodguardian-watch --region=$REGION --member=serviceAccount:$SA \
    --role=roles/run.invoker
gcloud scheduler jobs create http prodguardian-watch-every-5-minutes --location=$REGION \
    --schedule="*/5 * * * *" --time-zone=Etc/UTC --http-method=POST \
    --uri="https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/prodguardian-watch:run" \
    --oauth-service-account-email=$SA
