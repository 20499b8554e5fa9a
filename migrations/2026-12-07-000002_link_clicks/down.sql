DROP TABLE click_salts;
DROP TABLE click_batches;
DROP TABLE link_visitors;
DROP TABLE link_clicks;
