-- Argo CD health check for argoproj.io/v1alpha1 Application (Lua 5.1, as gopher-lua runs it).
-- Argo CD no longer assesses child Applications itself, so an app-of-apps parent would not wait
-- between the sync waves of deploy/argocd/application.yaml without this. Reports the child's health.
-- Install: resource.customizations.health.argoproj.io_Application in argocd-cm (deploy/argocd/render.py).
local hs = { status = "Progressing", message = "waiting for the Application's health" }
if type(obj.status) == "table" and type(obj.status.health) == "table" and obj.status.health.status ~= nil then
  hs.status = obj.status.health.status
  if type(obj.status.health.message) == "string" and obj.status.health.message ~= "" then
    hs.message = obj.status.health.message
  else
    hs.message = "Application is " .. obj.status.health.status
  end
end
return hs
