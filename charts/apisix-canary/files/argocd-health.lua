-- Argo CD health check of apisix-canary.dev Canary (v1beta1 and v1alpha1 share the
-- status). Argo CD sets `obj` and reads the returned table. Install it as the key
-- resource.customizations.health.apisix-canary.dev_Canary of argocd-cm (see the chart's
-- README). Tested by tests/chart/argocd_health.py against tests/fixtures/argocd/.
local hs = {}

-- The message of the Promoted condition, written by the controller with each phase.
local function promoted(status)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == "Promoted" and type(c.message) == "string" and c.message ~= "" then
      return c.message
    end
  end
  return nil
end

local progressing = {
  Initializing = true,
  Waiting = true,
  Progressing = true,
  WaitingPromotion = true,
  Promoting = true,
  Finalising = true,
}
local healthy = { Initialized = true, Succeeded = true }

local status = obj.status
local phase = nil
local message = nil
if type(status) == "table" then
  phase = status.phase
  message = promoted(status)
end

-- spec.suspend (also set from a Deployment's apisix-canary.dev/suspend annotation in
-- annotation mode): the controller acts on nothing, whatever the phase says.
if type(obj.spec) == "table" and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended (spec.suspend is true)"
  if phase ~= nil then
    hs.message = hs.message .. " in phase " .. phase
  end
  if message ~= nil then
    hs.message = hs.message .. ": " .. message
  end
  return hs
end

if phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the apisix-canary controller to initialize the Canary"
  return hs
end

if progressing[phase] then
  hs.status = "Progressing"
elseif healthy[phase] then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Unknown"
end
hs.message = message or ("Phase " .. phase)
local weight = tonumber(status.canaryWeight)
if hs.status == "Progressing" and weight ~= nil and weight > 0 then
  hs.message = "Canary weight " .. weight .. "%: " .. hs.message
end
return hs
