-- Quarto-style cross-references and conditional content for plain pandoc.
-- Quarto renders the same .qmd natively; this filter makes pandoc read it the same way:
--   ::: {.content-visible when-format="html"} / unless-format="html"  -> kept or dropped by format
--   ::: {#fig-x} ... caption paragraph :::                             -> a numbered Figure
--   pipe table with caption ": text {#tbl-x}"                          -> a numbered Table
--   @fig-x, @tbl-x                                                      -> "Figure N", "Table N"

local numbers = {}
local counters = { fig = 0, tbl = 0 }
local names = { fig = "Figure", tbl = "Table" }
local is_html = FORMAT:match("html") ~= nil

local function kind_of(id)
  return id and id:match("^(fig)%-") or (id and id:match("^(tbl)%-"))
end

local function visible(div)
  local when, unless = div.attributes["when-format"], div.attributes["unless-format"]
  if div.classes:includes("content-visible") then
    if when then return FORMAT:match(when) ~= nil end
    if unless then return FORMAT:match(unless) == nil end
  end
  return true
end

-- A table's label: its identifier, or "{#tbl-x}" at the end of its caption text.
local function table_id(tbl)
  local id = tbl.identifier
  if (id == nil or id == "") and tbl.caption and tbl.caption.long then
    id = pandoc.utils.stringify(tbl.caption.long):match("{#(tbl%-[%w%-_]+)}")
  end
  return id
end

-- First pass: number figures and tables in document order.
local function number(doc)
  doc:walk({
    Div = function(div)
      if kind_of(div.identifier) == "fig" then
        counters.fig = counters.fig + 1
        numbers[div.identifier] = counters.fig
      end
    end,
    Table = function(tbl)
      local id = table_id(tbl)
      if kind_of(id) == "tbl" then
        counters.tbl = counters.tbl + 1
        numbers[id] = counters.tbl
      end
    end,
  })
end

local function strip_label(blocks)
  -- Remove a trailing "{#tbl-x}" left in caption text when the reader kept it as text.
  return blocks:walk({
    Str = function(s)
      if s.text:match("^{#tbl%-[%w%-_]+}$") then return {} end
    end,
  })
end

local function filter_blocks(doc)
  return doc:walk({
    Div = function(div)
      if not visible(div) then return {} end
      if div.classes:includes("content-visible") then return div.content end
      if kind_of(div.identifier) == "fig" then
        local content = div.content
        local caption = {}
        if #content > 0 and content[#content].t == "Para" then
          caption = { pandoc.Plain(content[#content].content) }
          content = content:clone()
          content:remove(#content)
        end
        if is_html then
          table.insert(caption, 1, pandoc.Plain({ pandoc.Strong({ pandoc.Str("Figure " .. numbers[div.identifier] .. ":") }), pandoc.Space() }))
          caption = { pandoc.Plain(pandoc.utils.blocks_to_inlines(caption)) }
        end
        return pandoc.Figure(content, { long = caption }, pandoc.Attr(div.identifier))
      end
    end,
    Table = function(tbl)
      local id = table_id(tbl)
      if kind_of(id) == "tbl" then
        tbl.identifier = id
        tbl.caption.long = strip_label(tbl.caption.long)
        if is_html then
          local inl = pandoc.utils.blocks_to_inlines(tbl.caption.long)
          table.insert(inl, 1, pandoc.Space())
          table.insert(inl, 1, pandoc.Strong({ pandoc.Str("Table " .. numbers[id] .. ":") }))
          tbl.caption.long = { pandoc.Plain(inl) }
        end
        return tbl
      end
    end,
    Cite = function(cite)
      local id = cite.citations[1].id
      local kind = kind_of(id)
      if kind and numbers[id] then
        return pandoc.Link(names[kind] .. " " .. numbers[id], "#" .. id)
      end
    end,
  })
end

function Pandoc(doc)
  number(doc)
  return filter_blocks(doc)
end
