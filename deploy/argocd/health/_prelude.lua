-- Shared by every telco.intent.dev health script: deploy/argocd/render.py inlines this file where
-- a script has the include line for it (Argo CD needs each script self-contained).
local hs = {}

-- The condition of type `ctype` in status.conditions, or nil.
local function condition(status, ctype)
  if status == nil or type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function is(status, ctype, value)
  local c = condition(status, ctype)
  return c ~= nil and c.status == value
end

-- A condition's message (or reason when the message is empty), else `fallback`.
local function says(status, ctype, fallback)
  local c = condition(status, ctype)
  if c ~= nil and type(c.message) == "string" and c.message ~= "" then
    return c.message
  end
  if c ~= nil and type(c.reason) == "string" and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local function reason(status, ctype)
  local c = condition(status, ctype)
  if c ~= nil then
    return c.reason
  end
  return nil
end

-- Why the status cannot be judged yet: deletion in progress, no status, or a spec the
-- controller has not processed (status.observedGeneration < metadata.generation).
local function pending(o)
  local meta = o.metadata or {}
  if meta.deletionTimestamp ~= nil then
    return "being deleted: waiting for the controller to clean up and release its finalizer"
  end
  if type(o.status) ~= "table" then
    return "waiting for the controller to report a status"
  end
  local generation = meta.generation
  local observed = o.status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return "waiting for the controller to process generation " .. tostring(generation)
  end
  return nil
end

local function result(health, message)
  hs.status = health
  hs.message = message
  return hs
end
