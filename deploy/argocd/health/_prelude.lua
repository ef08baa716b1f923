-- Shared by every telco.intent.dev health script: deploy/argocd/render.py inlines this file where
-- a script has the include line for it (Argo CD needs each script self-contained).
-- Argo CD runs custom health scripts with only its base, table, package and a reduced os library
-- open: no string or math library and no string methods, so text is built with `..` and tostring.
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

local function result(health, message)
  hs.status = health
  hs.message = message
  return hs
end

-- The verdict every kind shares, or nil when the kind's own rules decide:
-- - being deleted: Progressing, with the message Argo CD shows for deleting objects (deletionMessage;
--   without it Argo CD replaces the message by its own "Pending deletion");
-- - no status yet, or a spec the controller has not processed (observedGeneration < generation): Progressing;
-- - Stalled=True (the controller writes it when a person must act): Degraded with what to do.
local function common(o)
  local meta = o.metadata or {}
  if meta.deletionTimestamp ~= nil then
    hs.deletionMessage = "being deleted: waiting for the controller to clean up and release its finalizer"
    return result("Progressing", hs.deletionMessage)
  end
  if type(o.status) ~= "table" then
    return result("Progressing", "waiting for the controller to report a status")
  end
  local generation = meta.generation
  local observed = o.status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    return result("Progressing", "waiting for the controller to process generation " .. tostring(generation))
  end
  if is(o.status, "Stalled", "True") then
    return result("Degraded", says(o.status, "Stalled", "stalled"))
  end
  return nil
end
