<?php
$CONFIG = array (
  'dbtype' => 'mysql,
);
