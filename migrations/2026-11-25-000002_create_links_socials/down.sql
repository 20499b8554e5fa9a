DROP TABLE socials;
DROP TABLE links;
