-- A safety net behind engine/report/markdown.py's `escape`: whatever text reached the document
-- without it still cannot run, load or place anything.
--   raw HTML/typst/TeX blocks and inlines  -> shown as code, unless a raw HTML block starts with
--                                            the engine's mark (markdown.RAW_MARK; its token is the
--                                            metadata engine-raw-token)
--   links                                  -> kept only to http(s), mailto and in-document targets
--   images                                 -> kept only from the report's own figures/ folder
-- Runs before crossref.lua; the metadata key is removed so it reaches no output.

local function allowed_target(target)
  -- Browsers drop ASCII whitespace and control characters inside a URL's scheme: so does this check,
  -- after decoding percent escapes (pandoc writes a space in a target as %20).
  local t = target:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  t = t:gsub("[%c%s]", ""):lower()
  local scheme = t:match("^([%a][%w+.-]*):")
  if scheme == nil then
    return true  -- in-document (#x) or relative
  end
  return scheme == "http" or scheme == "https" or scheme == "mailto"
end

local function own_figure(src)
  return src:match("^figures/[%w%-_]+%.svg$") ~= nil
end

function Pandoc(doc)
  local token = doc.meta["engine-raw-token"] and pandoc.utils.stringify(doc.meta["engine-raw-token"]) or ""
  doc.meta["engine-raw-token"] = nil
  local mark = "<!-- engine-raw " .. token .. " -->"
  local function ours(raw)
    return #token >= 32 and raw.format == "html" and raw.text:sub(1, #mark) == mark
  end
  return doc:walk({
    RawBlock = function(raw)
      if ours(raw) then
        return pandoc.RawBlock("html", raw.text:sub(#mark + 1))
      end
      return pandoc.CodeBlock(raw.text)
    end,
    RawInline = function(raw)
      return pandoc.Code(raw.text)
    end,
    Link = function(link)
      if not allowed_target(link.target) then
        return link.content
      end
    end,
    Image = function(image)
      if not own_figure(image.src) then
        return image.caption
      end
    end,
  })
end
