-- Argo CD health for every flywheel.dev kind (Dataset, TrainingRun, ModelVersion,
-- ModelDeployment, ModelMonitor), from the conditions every kind carries:
--   not yet observed (no status, or observedGeneration behind generation) -> Progressing
--   Stalled=True (the spec cannot be acted on, or a terminal failure)      -> Degraded
--   Degraded=True (a refused version, a rolled-back rollout)               -> Degraded
--   Progressing=True or Reconciling=True (work in progress, or waiting)    -> Progressing
--   Ready=True -> Healthy; Ready=False -> Degraded; otherwise              -> Progressing
-- DriftDetected and WaitingForNewData are observations, not failures: they do not count.
local hs = {}
local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Flywheel operator to observe this object"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local found = {}
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    found[condition.type] = condition
  end
end
local function is_true(kind)
  return found[kind] ~= nil and found[kind].status == "True"
end
local function message(kind, default)
  local condition = found[kind]
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return default
end
if is_true("Stalled") then
  hs.status = "Degraded"
  hs.message = message("Stalled", "Stalled")
  return hs
end
if is_true("Degraded") then
  hs.status = "Degraded"
  hs.message = message("Degraded", "Degraded")
  return hs
end
if is_true("Progressing") or is_true("Reconciling") then
  hs.status = "Progressing"
  if is_true("Progressing") then
    hs.message = message("Progressing", "Progressing")
  else
    hs.message = message("Reconciling", "Reconciling")
  end
  return hs
end
local ready = found["Ready"]
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message("Ready", "Ready")
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = message("Ready", "Not ready")
  return hs
end
hs.status = "Progressing"
hs.message = message("Ready", "Waiting for Ready")
return hs
